/*
 * Offline stand-in for Toss's browser SDK v2 (https://js.tosspayments.com/v2/standard), written
 * after the SDK's own TypeScript interface (@tosspayments/tosspayments-sdk 2.8.1,
 * types/index.d.ts; tests/test_sandbox_sdk.py compares the two):
 *
 *   TossPayments(clientKey)
 *     .widgets({customerKey})  setAmount, renderPaymentMethods, renderAgreement, requestPayment
 *     .payment({customerKey})  requestPayment({method: CARD | TRANSFER | VIRTUAL_ACCOUNT, …}),
 *                              destroy
 *
 * with the argument checks the interface documents (escrow options included) and its errors,
 * thrown (or rejected) as Error objects whose `name` is the interface's (UserCancelError,
 * NotSetupAmountError, …) and whose `code` is the SDK's (USER_CANCEL, NOT_SETUP_AMOUNT, …).
 * Not served: brandpay(), requestBillingAuth, renderPaymentWindow, requestPaymentWindow, and the
 * Promise style of requestPayment (without successUrl/failUrl: NotSupportedPromiseError).
 *
 * requestPayment registers the payment window with the sandbox (a READY payment with its own
 * paymentKey) and shows it as the SDK's `windowTarget` says: "iframe" (a PC's default) draws it
 * in an iframe over the page — the shopper's outcome then moves the whole tab to successUrl or
 * failUrl, and closing the window rejects the promise with UserCancelError (window.js tells this
 * script); "self" (a phone's default) navigates to it, and closing it goes to failUrl.
 *
 * Everything it loads or calls is on the sandbox's origin (the one this script came from), so
 * a page on another origin works too. No inline styles: widget.css, from the same origin.
 */
(function () {
  "use strict";
  if (window.TossPayments && window.TossPayments.__sandbox) return;

  var script = document.currentScript;
  var scriptUrl = new URL(
    script && script.src ? script.src : "/sandbox/widget/v2/standard",
    window.location.href
  );
  // e.g. "http://127.0.0.1:8787/sandbox": the sandbox may live on another origin than the page.
  var BASE = scriptUrl.origin + scriptUrl.pathname.replace(/\/widget\/v2\/standard\/?$/, "");

  var ANONYMOUS = "@@ANONYMOUS";
  // The interface's rules: customerKey "영문 대소문자, 숫자, 특수문자 -, _, =, ., @ … 최소 2자
  // 이상 최대 50자"; orderId "영문 대소문자, 숫자, 특수문자 -, _, =로 이루어진 6자 이상 64자
  // 이하"; customerMobilePhone "- 없이 숫자로만 구성된 최소 8자, 최대 15자".
  var CUSTOMER_KEY_RE = /^[A-Za-z0-9\-_=.@]{2,50}$/;
  var ORDER_ID_RE = /^[A-Za-z0-9_=-]{6,64}$/;
  var PHONE_RE = /^[0-9]{8,15}$/;
  var SECRET_KEY_RE = /^(test|live)_(gsk|sk)_/;
  var CLIENT_KEY_RE = /^(test|live)_(gck|ck)_[A-Za-z0-9_]+$/;
  var URL_RE = /^https?:\/\/[^/\s?#]+[^\s]*$/;
  // The widget's picker; the payment window's methods (Toss has more: MOBILE_PHONE, gift
  // certificates, FOREIGN_EASY_PAY — NotSupportedMethodError here).
  var WIDGET_METHODS = [
    { code: "CARD", label: "카드" },
    { code: "VIRTUAL_ACCOUNT", label: "가상계좌" },
  ];
  var WINDOW_METHODS = ["CARD", "TRANSFER", "VIRTUAL_ACCOUNT"];
  var counter = 0;

  // The SDK's errors: the name the interface gives (PublicError.<product>.<name>) → [its code,
  // its message], as Toss's SDK error-code table lists them (USER_CANCEL is what closing the
  // payment window gives, https://techchat.tosspayments.com/m/1360069663744069843).
  // -- sdk errors --
  var ERRORS = {
    AgreementWidgetAlreadyRenderedError: [
      "AGREEMENT_WIDGET_ALREADY_RENDERED",
      "하나의 약관 위젯만을 사용할 수 있어요.",
    ],
    BelowZeroAmountError: ["BELOW_ZERO_AMOUNT", "금액은 0보다 커야 합니다."],
    IncorrectFailUrlFormatError: ["INCORRECT_FAIL_URL_FORMAT", "잘못된 failUrl 입니다."],
    IncorrectSuccessUrlFormatError: ["INCORRECT_SUCCESS_URL_FORMAT", "잘못된 successUrl 입니다."],
    InsecureKeyUsageError: [
      "INSECURE_KEY_USAGE",
      "test_gsk, live_gsk로 시작하는 시크릿 키는 클라이언트 코드에 노출되면 안 됩니다. " +
        "구매자를 식별하는 customerKey 값을 사용해주세요.",
    ],
    InvalidAmountCurrencyError: ["INVALID_AMOUNT_CURRENCY", "잘못된 통화 값입니다."],
    InvalidAmountValueError: ["INVALID_AMOUNT_VALUE", "결제금액이 올바르지 않습니다."],
    InvalidCallbackParameterError: ["INVALID_PARAMETER", "콜백 함수가 올바르지 않습니다."],
    InvalidClientKeyError: ["INVALID_CLIENT_KEY", "ClientKey 형태가 올바르지 않습니다."],
    InvalidCustomerKeyError: [
      "INVALID_CUSTOMER_KEY",
      "고객키는 영문 대소문자, 숫자, 특수문자 -, _, =, ., @로 2자 이상 50자 이하여야 합니다.",
    ],
    InvalidEventParameterError: ["INVALID_PARAMETER", "허용하지 않는 이벤트입니다."],
    InvalidMetadataError: ["INVALID_METADATA", "올바르지 않은 metadata 형식입니다."],
    InvalidMethodTransactionError: ["INVALID_METHOD_TRANSACTION", "이미 다른 요청을 수행하고 있어요."],
    InvalidParametersError: [
      "INVALID_PARAMETERS",
      "필수 파라미터를 누락하거나, 정의되지 않은 파라미터를 추가하거나, 파라미터의 타입이 " +
        "올바르지 않을 때 발생합니다.",
    ],
    InvalidSelectorError: [
      "INVALID_SELECTOR",
      "selector에 해당하는 HTML 요소를 찾을 수 없습니다. selector 값을 다시 확인해주세요.",
    ],
    InvalidVariantKeyError: [
      "INVALID_VARIANT_KEY",
      "variantKey 에 해당하는 위젯을 찾을 수 없습니다. variantKey 값을 다시 확인해주세요.",
    ],
    NeedAgreementWithRequiredTermsError: [
      "NEED_AGREEMENT_WITH_REQUIRED_TERMS",
      "필수 약관에 동의해주세요.",
    ],
    NotSelectedPaymentMethodError: [
      "NOT_SELECTED_PAYMENT_METHOD",
      "결제수단이 아직 선택되지 않았어요. 결제수단을 선택해 주세요.",
    ],
    NotSetupAmountError: [
      "NOT_SETUP_AMOUNT",
      "결제금액이 설정되지 않았습니다. setAmount를 호출해주세요.",
    ],
    NotSupportedAPIIndividualKeyError: [
      "NOT_SUPPORTED_API_INDIVIDUAL_KEY",
      "결제위젯 연동 키의 클라이언트 키로 SDK를 연동해주세요. API 개별 연동 키는 지원하지 않습니다.",
    ],
    NotSupportedMethodError: ["NOT_SUPPORTED_METHOD", "지원되지 않는 결제수단입니다."],
    NotSupportedPromiseError: [
      "NOT_SUPPORTED_PROMISE",
      "Promise 방식을 지원하지 않습니다. successUrl, failUrl을 사용해주세요.",
    ],
    NotSupportedWidgetKeyError: [
      "NOT_SUPPORTED_WIDGET_KEY",
      "API 개별 연동 키의 클라이언트 키로 SDK를 연동해주세요. 결제위젯 연동 키는 지원하지 않습니다.",
    ],
    PaymentMethodsWidgetAlreadyRenderedError: [
      "PAYMENT_METHODS_WIDGET_ALREADY_RENDERED",
      "하나의 결제수단 위젯만을 사용할 수 있어요.",
    ],
    PaymentRequestAbortedError: ["PAYMENT_REQUEST_ABORTED", "결제 요청이 중단되었습니다."],
    PaymentRequestFailError: ["PAYMENT_REQUEST_FAIL", "결제 요청에 실패했습니다."],
    UnknownError: ["UNKNOWN", "알 수 없는 에러가 발생했습니다."],
    UserCancelError: ["USER_CANCEL", "취소되었습니다."],
  };
  // -- end sdk errors --

  function sdkError(name, detail) {
    var entry = ERRORS[name];
    var err = new Error(detail ? entry[1] + " (" + detail + ")" : entry[1]);
    err.name = name;
    err.code = entry[0];
    return err;
  }

  function isObject(value) {
    return value !== null && typeof value === "object" && !Array.isArray(value);
  }

  function absent(value) {
    return value === undefined || value === null;
  }

  function won(value) {
    return Number(value).toLocaleString("ko-KR") + "원";
  }

  // A phone gets the redirect flow, as the SDK's windowTarget default says ("self" on mobile,
  // "iframe" on a PC). How the SDK tells the two apart is not documented: a mobile user agent or
  // a phone-sized screen here.
  function isMobile() {
    var ua = (window.navigator && window.navigator.userAgent) || "";
    var width = window.screen && window.screen.width;
    return /Android|iPhone|iPad|iPod|Mobi/i.test(ua) || (width > 0 && width < 768);
  }

  var sheet = null;
  function stylesheet() {
    if (sheet) return sheet;
    sheet = new Promise(function (resolve) {
      if (document.querySelector("link[data-toss-sandbox]")) {
        resolve();
        return;
      }
      var link = document.createElement("link");
      link.rel = "stylesheet";
      link.href = BASE + "/static/widget.css";
      link.setAttribute("data-toss-sandbox", "");
      link.addEventListener("load", resolve);
      link.addEventListener("error", resolve);
      document.head.appendChild(link);
    });
    return sheet;
  }

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function target(params) {
    var node = document.querySelector(params.selector);
    if (!node) throw sdkError("InvalidSelectorError", String(params.selector));
    return node;
  }

  // An event API as the interface has it: one event name, a function; else InvalidParameter.
  function emitter(eventName) {
    var handlers = [];
    return {
      on: function (event, callback) {
        if (event !== eventName) throw sdkError("InvalidEventParameterError", String(event));
        if (typeof callback !== "function") throw sdkError("InvalidCallbackParameterError");
        handlers.push(callback);
      },
      emit: function (value) {
        handlers.forEach(function (callback) {
          callback(value);
        });
      },
    };
  }

  function checkClientKey(clientKey, product) {
    if (typeof clientKey !== "string" || !clientKey) throw sdkError("InvalidClientKeyError");
    if (SECRET_KEY_RE.test(clientKey)) {
      throw sdkError(
        "InvalidClientKeyError",
        "시크릿 키는 브라우저에서 사용할 수 없습니다. 클라이언트 키를 사용해주세요."
      );
    }
    var match = CLIENT_KEY_RE.exec(clientKey);
    if (!match) throw sdkError("InvalidClientKeyError");
    if (product === "widgets" && match[2] === "ck") {
      throw sdkError("NotSupportedAPIIndividualKeyError");
    }
    if (product === "payment" && match[2] === "gck") throw sdkError("NotSupportedWidgetKeyError");
  }

  function checkCustomerKey(params) {
    var customerKey = isObject(params) ? params.customerKey : undefined;
    if (customerKey === ANONYMOUS) return customerKey;
    if (typeof customerKey === "string" && SECRET_KEY_RE.test(customerKey)) {
      throw sdkError("InsecureKeyUsageError");
    }
    if (typeof customerKey !== "string" || !CUSTOMER_KEY_RE.test(customerKey)) {
      throw sdkError(
        "InvalidCustomerKeyError",
        "비회원은 TossPayments.ANONYMOUS를 사용하세요: " + String(customerKey)
      );
    }
    return customerKey;
  }

  // An amount {currency: "KRW", value}: won are whole numbers (Toss's amounts are integer KRW);
  // other currencies belong to methods the sandbox does not serve.
  function checkAmount(amount) {
    if (!isObject(amount)) throw sdkError("InvalidParametersError", "amount: {currency, value}");
    if (amount.currency !== "KRW") {
      throw sdkError("InvalidAmountCurrencyError", "샌드박스는 KRW만 지원합니다: " + amount.currency);
    }
    var value = amount.value;
    if (typeof value !== "number" || !isFinite(value) || Math.floor(value) !== value) {
      throw sdkError("InvalidAmountValueError", String(value));
    }
    return value;
  }

  function optionalText(params, name, max) {
    var value = params[name];
    if (absent(value)) return null;
    if (typeof value !== "string" || value.length > max) {
      throw sdkError("InvalidParametersError", name + ": 최대 " + max + "자의 문자열");
    }
    return value || null;
  }

  // What every requestPayment takes (the interface's PaymentRequest / WidgetPaymentRequest).
  function checkRequest(params, amount) {
    if (typeof params.orderId !== "string" || !ORDER_ID_RE.test(params.orderId)) {
      throw sdkError(
        "InvalidParametersError",
        "orderId: 영문 대소문자, 숫자, 특수문자 -, _, =로 이루어진 6자 이상 64자 이하의 문자열"
      );
    }
    var name = params.orderName;
    if (typeof name !== "string" || !name.trim() || name.length > 100) {
      throw sdkError("InvalidParametersError", "orderName: 1자 이상 100자 이하의 문자열");
    }
    var phone = params.customerMobilePhone;
    if (!absent(phone) && (typeof phone !== "string" || !PHONE_RE.test(phone))) {
      throw sdkError(
        "InvalidParametersError",
        "customerMobilePhone: - 없이 숫자로만 구성된 8자 이상 15자 이하의 문자열"
      );
    }
    var taxFree = params.taxFreeAmount;
    if (
      !absent(taxFree) &&
      (typeof taxFree !== "number" || Math.floor(taxFree) !== taxFree || taxFree < 0 || taxFree > amount)
    ) {
      throw sdkError("InvalidParametersError", "taxFreeAmount: 0 이상 결제 금액 이하의 정수");
    }
    checkMetadata(params.metadata);
    var hasSuccess = !absent(params.successUrl) && params.successUrl !== "";
    var hasFail = !absent(params.failUrl) && params.failUrl !== "";
    if (!hasSuccess && !hasFail) {
      throw sdkError(
        "NotSupportedPromiseError",
        "샌드박스는 Redirect 방식만 제공합니다: successUrl, failUrl을 넘겨주세요."
      );
    }
    if (!absoluteUrl(params.successUrl)) throw sdkError("IncorrectSuccessUrlFormatError");
    if (!absoluteUrl(params.failUrl)) throw sdkError("IncorrectFailUrlFormatError");
    return {
      orderId: params.orderId,
      orderName: name,
      successUrl: params.successUrl,
      failUrl: params.failUrl,
      customerEmail: optionalText(params, "customerEmail", 100),
      customerName: optionalText(params, "customerName", 100),
      customerMobilePhone: absent(phone) || phone === "" ? null : phone,
      taxFreeAmount: absent(taxFree) ? 0 : taxFree,
      target: windowTarget(params.windowTarget),
    };
  }

  // Escrow (구매안전서비스) options, where the interface has them: the widget's `transfer` and
  // `virtualAccount` (WidgetPaymentRequest), the payment window's `card`, `transfer` and
  // `virtualAccount`. Each takes `useEscrow?: boolean | null` and `escrowProducts?: Array<{id,
  // name, code?: string | null; unitPrice, quantity?: number | null}> | null`, "에스크로를 사용하는
  // 상점이라면 필수 파라미터". Returns what the window's registration gets ({option: {useEscrow,
  // escrowProducts}}); a field of another type, one the interface does not define or useEscrow
  // true without products → InvalidParametersError. Amounts and counts are whole numbers (KRW).
  var ESCROW_TEXT = ["id", "name", "code"];
  var ESCROW_NUMBERS = ["unitPrice", "quantity"];

  function checkEscrowProduct(item, where) {
    if (!isObject(item)) throw sdkError("InvalidParametersError", where + ": 객체");
    Object.keys(item).forEach(function (key) {
      if (ESCROW_TEXT.indexOf(key) < 0 && ESCROW_NUMBERS.indexOf(key) < 0) {
        throw sdkError("InvalidParametersError", where + "." + key + ": 정의되지 않은 파라미터");
      }
    });
    ESCROW_TEXT.forEach(function (key) {
      if (!absent(item[key]) && typeof item[key] !== "string") {
        throw sdkError("InvalidParametersError", where + "." + key + ": 문자열");
      }
    });
    ESCROW_NUMBERS.forEach(function (key) {
      var value = item[key];
      if (absent(value)) return;
      if (typeof value !== "number" || Math.floor(value) !== value || value < 0) {
        throw sdkError("InvalidParametersError", where + "." + key + ": 0 이상의 정수");
      }
    });
    return {
      id: absent(item.id) ? null : item.id,
      name: absent(item.name) ? null : item.name,
      code: absent(item.code) ? null : item.code,
      unitPrice: absent(item.unitPrice) ? null : item.unitPrice,
      quantity: absent(item.quantity) ? null : item.quantity,
    };
  }

  function checkEscrow(params, options) {
    var found = {};
    options.forEach(function (option) {
      var given = params[option];
      if (absent(given)) return;
      if (!isObject(given)) throw sdkError("InvalidParametersError", option + ": 객체");
      var use = given.useEscrow;
      if (!absent(use) && typeof use !== "boolean") {
        throw sdkError("InvalidParametersError", option + ".useEscrow: true 또는 false");
      }
      var items = given.escrowProducts;
      if (!absent(items) && !Array.isArray(items)) {
        throw sdkError("InvalidParametersError", option + ".escrowProducts: 배열");
      }
      var products = absent(items)
        ? null
        : items.map(function (item, i) {
            return checkEscrowProduct(item, option + ".escrowProducts[" + i + "]");
          });
      if (use === true && !(products && products.length)) {
        throw sdkError(
          "InvalidParametersError",
          option + ".escrowProducts: 에스크로를 사용하는 상점이라면 필수 파라미터입니다."
        );
      }
      if (!absent(use) || products) {
        found[option] = { useEscrow: absent(use) ? null : use, escrowProducts: products };
      }
    });
    return found;
  }

  // "오리진을 포함한 형태로 설정해주세요" (WithRedirection.successUrl / failUrl).
  function absoluteUrl(value) {
    return typeof value === "string" && value.length <= 2048 && URL_RE.test(value);
  }

  // "최대 5개의 키-값 쌍 … 키는 [, ]를 사용하지 않는 최대 40자의 문자열, 값은 최대 2000자의
  // 문자열" (metadata).
  function checkMetadata(metadata) {
    if (absent(metadata)) return;
    if (!isObject(metadata)) throw sdkError("InvalidMetadataError");
    var keys = Object.keys(metadata);
    var bad = keys.length > 5 || keys.some(function (key) {
      var value = metadata[key];
      return key.length > 40 || /[[\]]/.test(key) || typeof value !== "string" || value.length > 2000;
    });
    if (bad) throw sdkError("InvalidMetadataError");
  }

  // "self" navigates (a phone's default); "iframe" (a PC's default) is not for phones.
  function windowTarget(value) {
    if (absent(value)) return isMobile() ? "self" : "iframe";
    if (value === "self") return "self";
    if (value === "iframe") {
      if (isMobile()) {
        throw sdkError("InvalidParametersError", "모바일 환경에서는 windowTarget iframe을 사용할 수 없습니다.");
      }
      return "iframe";
    }
    throw sdkError("InvalidParametersError", "windowTarget: iframe 또는 self");
  }

  // -- the payment window -----------------------------------------------------------------------

  // The request whose window is open (one at a time, as the SDK's InvalidMethodTransactionError
  // says): {owner, reject, overlay, frame, origin}.
  var active = null;

  function close(job) {
    if (job.overlay && job.overlay.parentNode) job.overlay.parentNode.removeChild(job.overlay);
    if (active === job) active = null;
  }

  window.addEventListener("message", function (event) {
    var job = active;
    var data = event.data;
    if (!job || !job.frame || event.source !== job.frame.contentWindow) return;
    if (event.origin !== job.origin || !isObject(data) || data.source !== "toss-sandbox-window") {
      return;
    }
    if (data.type === "USER_CANCEL") {
      close(job);
      job.reject(sdkError("UserCancelError"));
    }
  });

  function showFrame(job, windowUrl) {
    return stylesheet().then(function () {
      if (active !== job) return; // destroyed meanwhile
      var overlay = el("div", "tsbx-overlay");
      overlay.setAttribute("data-toss-sandbox-overlay", "");
      overlay.setAttribute("role", "dialog");
      overlay.setAttribute("aria-modal", "true");
      overlay.setAttribute("aria-label", "결제창");
      var frame = el("iframe", "tsbx-frame");
      frame.setAttribute("data-toss-sandbox-window", "");
      frame.setAttribute("title", "토스페이먼츠 샌드박스 결제창");
      frame.src = windowUrl;
      overlay.appendChild(frame);
      document.body.appendChild(overlay);
      job.overlay = overlay;
      job.frame = frame;
      job.origin = new URL(windowUrl, window.location.href).origin;
    });
  }

  // Register the window with the sandbox, then show it. Settles only by rejecting: on a refusal,
  // when the shopper closes the iframe, or on destroy(); otherwise the tab leaves for the
  // window (self) or, from the window, for successUrl or failUrl.
  function openWindow(owner, path, payload, windowTargetValue) {
    return new Promise(function (resolve, reject) {
      if (active) throw sdkError("InvalidMethodTransactionError");
      var job = { owner: owner, reject: reject, overlay: null, frame: null, origin: null };
      active = job;
      fetch(BASE + path, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(payload),
      })
        .then(function (resp) {
          return resp.json().then(
            function (data) {
              return { ok: resp.ok, data: data || {} };
            },
            function () {
              return { ok: false, data: {} };
            }
          );
        })
        .then(function (result) {
          if (!result.ok || !result.data.windowUrl) {
            var err = sdkError("PaymentRequestFailError");
            err.code = result.data.code || err.code;
            err.message = result.data.message || err.message;
            throw err;
          }
          if (active !== job) return undefined;
          if (windowTargetValue === "self") {
            window.location.assign(result.data.windowUrl);
            return undefined;
          }
          return showFrame(job, result.data.windowUrl);
        })
        .catch(function (err) {
          close(job);
          reject(err && err.code ? err : sdkError("UnknownError", "결제창을 열지 못했습니다."));
        });
    });
  }

  // -- widgets() --------------------------------------------------------------------------------

  function createWidgets(clientKey, customerKey) {
    var amount = null;
    var methods = null;
    var agreement = null;
    var self = {};

    function renderMethods(container) {
      var events = emitter("paymentMethodSelect");
      var name = "tsbx-method-" + ++counter;
      var selected = WIDGET_METHODS[0].code;
      var root = el("div", "tsbx-widget tsbx-methods");
      root.setAttribute("data-testid", "sandbox-payment-methods");
      root.appendChild(el("p", "tsbx-badge", "테스트 결제 (샌드박스) — 실제로 결제되지 않습니다"));
      var group = el("div", "tsbx-options");
      group.setAttribute("role", "radiogroup");
      group.setAttribute("aria-label", "결제 수단");
      WIDGET_METHODS.forEach(function (m, i) {
        var label = el("label", "tsbx-option");
        var input = el("input");
        input.type = "radio";
        input.name = name;
        input.value = m.code;
        input.checked = i === 0;
        input.setAttribute("data-method", m.code);
        input.addEventListener("change", function () {
          selected = m.code;
          events.emit({ code: m.code });
        });
        label.appendChild(input);
        label.appendChild(el("span", "", m.label));
        group.appendChild(label);
      });
      root.appendChild(group);
      var total = el("p", "tsbx-amount");
      root.appendChild(total);
      container.replaceChildren(root);
      return {
        update: function () {
          total.textContent = "결제 금액 " + won(amount.value);
        },
        method: function () {
          return selected;
        },
        // WidgetPaymentMethodWidget
        api: {
          on: events.on,
          getSelectedPaymentMethod: function () {
            return Promise.resolve({ code: selected });
          },
          destroy: function () {
            container.replaceChildren();
            methods = null;
            return Promise.resolve();
          },
        },
      };
    }

    function renderAgreementBox(container) {
      var events = emitter("agreementStatusChange");
      var root = el("div", "tsbx-widget tsbx-agreement");
      var label = el("label", "tsbx-agree");
      var box = el("input");
      box.type = "checkbox";
      box.checked = true;
      box.setAttribute("data-testid", "sandbox-agreement");
      function status() {
        return {
          agreedRequiredTerms: box.checked,
          agreements: [{ term: { id: "sandbox-terms", required: true }, agreed: box.checked }],
        };
      }
      box.addEventListener("change", function () {
        events.emit(status());
      });
      label.appendChild(box);
      label.appendChild(
        el("span", "", "[필수] 결제 서비스 이용 약관, 개인정보 수집·이용 및 제3자 제공에 동의합니다.")
      );
      root.appendChild(label);
      root.appendChild(el("p", "tsbx-note", "샌드박스 약관 — 실제 결제·개인정보 처리는 일어나지 않습니다."));
      container.replaceChildren(root);
      return {
        agreed: function () {
          return box.checked;
        },
        // WidgetAgreementWidget
        api: {
          on: events.on,
          destroy: function () {
            container.replaceChildren();
            agreement = null;
            return Promise.resolve();
          },
        },
      };
    }

    function checkRenderParams(params) {
      if (!isObject(params) || typeof params.selector !== "string") {
        throw sdkError("InvalidParametersError", "selector: CSS 선택자 문자열");
      }
    }

    // The sandbox has the default UIs only: DEFAULT (payment methods), AGREEMENT (terms).
    function checkVariant(params, variant) {
      if (!absent(params.variantKey) && params.variantKey !== variant) {
        throw sdkError("InvalidVariantKeyError", "샌드박스의 variantKey: " + variant);
      }
    }

    // Amount: setAmount refuses what is not a whole KRW amount of at least 0; requestPayment
    // refuses 0 (BelowZeroAmountError: "금액은 0보다 커야 합니다.").
    self.setAmount = function (value) {
      return new Promise(function (resolve) {
        var checked = checkAmount(value);
        if (checked < 0) throw sdkError("InvalidAmountValueError", String(checked));
        amount = { currency: "KRW", value: checked };
        if (methods) methods.update();
        resolve();
      });
    };
    self.renderPaymentMethods = function (params) {
      return new Promise(function (resolve) {
        if (amount === null) throw sdkError("NotSetupAmountError");
        checkRenderParams(params);
        if (methods) throw sdkError("PaymentMethodsWidgetAlreadyRenderedError");
        checkVariant(params, "DEFAULT");
        var container = target(params);
        stylesheet();
        methods = renderMethods(container);
        methods.update();
        resolve(methods.api);
      });
    };
    self.renderAgreement = function (params) {
      return new Promise(function (resolve) {
        checkRenderParams(params);
        if (agreement) throw sdkError("AgreementWidgetAlreadyRenderedError");
        checkVariant(params, "AGREEMENT");
        var container = target(params);
        stylesheet();
        agreement = renderAgreementBox(container);
        resolve(agreement.api);
      });
    };
    self.requestPayment = function (params) {
      return new Promise(function (resolve, reject) {
        if (active) throw sdkError("InvalidMethodTransactionError");
        if (!isObject(params)) throw sdkError("InvalidParametersError", "결제 요청 정보(객체)");
        if (!methods) {
          throw sdkError("NotSelectedPaymentMethodError", "renderPaymentMethods()를 먼저 호출해주세요.");
        }
        if (agreement && !agreement.agreed()) throw sdkError("NeedAgreementWithRequiredTermsError");
        if (!(amount.value > 0)) throw sdkError("BelowZeroAmountError");
        var req = checkRequest(params, amount.value);
        var escrow = checkEscrow(params, ["transfer", "virtualAccount"]);
        var payload = {
          clientKey: clientKey,
          customerKey: customerKey,
          orderId: req.orderId,
          orderName: req.orderName,
          amount: amount.value,
          successUrl: req.successUrl,
          failUrl: req.failUrl,
          method: methods.method(),
          customerEmail: req.customerEmail,
          customerName: req.customerName,
          customerMobilePhone: req.customerMobilePhone,
          taxFreeAmount: req.taxFreeAmount,
        };
        Object.keys(escrow).forEach(function (option) {
          payload[option] = escrow[option];
        });
        openWindow(self, "/widget/sessions", payload, req.target).then(resolve, reject);
      });
    };
    return self;
  }

  // -- payment() --------------------------------------------------------------------------------

  function createPayment(clientKey, customerKey) {
    var self = {};
    self.requestPayment = function (params) {
      return new Promise(function (resolve, reject) {
        if (active) throw sdkError("InvalidMethodTransactionError");
        if (!isObject(params)) throw sdkError("InvalidParametersError", "결제 요청 정보(객체)");
        if (WINDOW_METHODS.indexOf(params.method) < 0) {
          throw sdkError(
            "NotSupportedMethodError",
            "샌드박스 결제창의 method: " + WINDOW_METHODS.join(", ") + " (받은 값: " + params.method + ")"
          );
        }
        var value = checkAmount(params.amount);
        if (value <= 0) throw sdkError("BelowZeroAmountError");
        var req = checkRequest(params, value);
        // Each method's request type has its own options object (card, transfer, virtualAccount).
        var option = { CARD: "card", TRANSFER: "transfer", VIRTUAL_ACCOUNT: "virtualAccount" };
        var escrow = checkEscrow(params, [option[params.method]]);
        var payload = {
          clientKey: clientKey,
          customerKey: customerKey,
          method: params.method,
          orderId: req.orderId,
          orderName: req.orderName,
          amount: value,
          successUrl: req.successUrl,
          failUrl: req.failUrl,
          customerEmail: req.customerEmail,
          customerName: req.customerName,
          customerMobilePhone: req.customerMobilePhone,
          taxFreeAmount: req.taxFreeAmount,
        };
        Object.keys(escrow).forEach(function (key) {
          payload[key] = escrow[key];
        });
        openWindow(self, "/payment/sessions", payload, req.target).then(resolve, reject);
      });
    };
    // "현재 열려있는 결제창/인증창을 닫고 … 열려있는 창이 없을 때 호출해도 안전합니다"; the open
    // request's promise rejects with PaymentRequestAbortedError.
    self.destroy = function () {
      return new Promise(function (resolve) {
        var job = active;
        if (job && job.owner === self) {
          close(job);
          job.reject(sdkError("PaymentRequestAbortedError"));
        }
        resolve();
      });
    };
    return self;
  }

  function TossPayments(clientKey) {
    return {
      widgets: function (params) {
        checkClientKey(clientKey, "widgets");
        return createWidgets(clientKey, checkCustomerKey(params));
      },
      payment: function (params) {
        checkClientKey(clientKey, "payment");
        return createPayment(clientKey, checkCustomerKey(params));
      },
    };
  }

  TossPayments.ANONYMOUS = ANONYMOUS;
  TossPayments.__sandbox = true;
  window.TossPayments = TossPayments;
})();
