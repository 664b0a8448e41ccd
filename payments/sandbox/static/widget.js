/*
 * Offline stand-in for the Toss Payments widget v2 (https://js.tosspayments.com/v2/standard).
 * Same calls and the same misuse errors; requestPayment registers the payment window with the
 * sandbox and then navigates to it, where the shopper picks an outcome.
 * No inline styles: the picker is styled by widget.css, loaded from the sandbox's origin.
 */
(function () {
  "use strict";
  if (window.TossPayments && window.TossPayments.__sandbox) return;

  var script = document.currentScript;
  var scriptUrl = new URL(
    script && script.src ? script.src : "/sandbox/widget/v2/standard",
    window.location.href
  );
  // e.g. "http://127.0.0.1:8787/sandbox": the sandbox may live on another origin than the shop.
  var BASE = scriptUrl.origin + scriptUrl.pathname.replace(/\/widget\/v2\/standard\/?$/, "");

  var ANONYMOUS = "@@ANONYMOUS";
  var CUSTOMER_KEY_RE = /^[A-Za-z0-9\-_=.@]{2,50}$/;
  var ORDER_ID_RE = /^[A-Za-z0-9_-]{6,64}$/;
  var URL_RE = /^https?:\/\/[^/\s?#]+/;
  var METHODS = [
    { code: "CARD", label: "카드" },
    { code: "VIRTUAL_ACCOUNT", label: "가상계좌" },
  ];
  var counter = 0;

  function tossError(code, message) {
    var err = new Error(message);
    err.name = "TossPaymentsError";
    err.code = code;
    return err;
  }

  function won(value) {
    return Number(value).toLocaleString("ko-KR") + "원";
  }

  function ensureStylesheet() {
    if (document.querySelector("link[data-toss-sandbox]")) return;
    var link = document.createElement("link");
    link.rel = "stylesheet";
    link.href = BASE + "/static/widget.css";
    link.setAttribute("data-toss-sandbox", "");
    document.head.appendChild(link);
  }

  function target(options) {
    var selector = options && options.selector;
    var el = typeof selector === "string" ? document.querySelector(selector) : null;
    if (!el) {
      throw tossError(
        "INVALID_SELECTOR",
        "selector에 해당하는 요소를 찾을 수 없습니다: " + String(selector)
      );
    }
    return el;
  }

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function emitter() {
    var handlers = {};
    return {
      on: function (event, cb) {
        (handlers[event] = handlers[event] || []).push(cb);
      },
      emit: function (event, value) {
        (handlers[event] || []).forEach(function (cb) {
          cb(value);
        });
      },
    };
  }

  function createWidgets(clientKey, customerKey) {
    var amount = null;
    var methods = null;
    var agreement = null;

    function requireAmount() {
      if (amount === null) {
        throw tossError(
          "NEED_AMOUNT",
          "결제 금액이 설정되지 않았습니다. setAmount()로 금액을 먼저 설정해주세요. (amount is not set)"
        );
      }
    }

    function renderMethods(container) {
      var events = emitter();
      var name = "tsbx-method-" + ++counter;
      var selected = "CARD";
      var root = el("div", "tsbx-widget tsbx-methods");
      root.setAttribute("data-testid", "sandbox-payment-methods");
      root.appendChild(el("p", "tsbx-badge", "테스트 결제 (샌드박스) — 실제로 결제되지 않습니다"));
      var group = el("div", "tsbx-options");
      group.setAttribute("role", "radiogroup");
      group.setAttribute("aria-label", "결제 수단");
      METHODS.forEach(function (m, i) {
        var label = el("label", "tsbx-option");
        var input = el("input");
        input.type = "radio";
        input.name = name;
        input.value = m.code;
        input.checked = i === 0;
        input.setAttribute("data-method", m.code);
        input.addEventListener("change", function () {
          selected = m.code;
          events.emit("paymentMethodSelect", { code: m.code, method: m.label });
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
        api: {
          on: events.on,
          getSelectedPaymentMethod: function () {
            var m = METHODS.filter(function (x) {
              return x.code === selected;
            })[0];
            return Promise.resolve({ type: "NORMAL", method: m.label, code: m.code });
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
      var events = emitter();
      var root = el("div", "tsbx-widget tsbx-agreement");
      var label = el("label", "tsbx-agree");
      var box = el("input");
      box.type = "checkbox";
      box.checked = true;
      box.setAttribute("data-testid", "sandbox-agreement");
      box.addEventListener("change", function () {
        events.emit("agreementStatusChange", { agreedRequiredTerms: box.checked });
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
        api: {
          on: events.on,
          getAgreementStatus: function () {
            return Promise.resolve({ agreedRequiredTerms: box.checked });
          },
          destroy: function () {
            container.replaceChildren();
            agreement = null;
            return Promise.resolve();
          },
        },
      };
    }

    function checkPaymentParams(p) {
      if (!p || typeof p !== "object") {
        throw tossError("INVALID_PARAMETERS", "결제 요청 정보가 필요합니다.");
      }
      if (typeof p.orderId !== "string" || !ORDER_ID_RE.test(p.orderId)) {
        throw tossError(
          "INVALID_ORDER_ID",
          "orderId는 영문 대소문자, 숫자, -, _ 로 이루어진 6자 이상 64자 이하여야 합니다."
        );
      }
      if (typeof p.orderName !== "string" || !p.orderName.trim() || p.orderName.length > 100) {
        throw tossError("INVALID_ORDER_NAME", "orderName은 1자 이상 100자 이하여야 합니다.");
      }
      ["successUrl", "failUrl"].forEach(function (name) {
        if (typeof p[name] !== "string" || !URL_RE.test(p[name])) {
          throw tossError(
            "INVALID_URL",
            name + "은 http:// 또는 https:// 로 시작하는 절대 URL이어야 합니다."
          );
        }
      });
    }

    return {
      setAmount: function (value) {
        return new Promise(function (resolve) {
          if (!value || typeof value !== "object" || value.currency !== "KRW") {
            throw tossError("INVALID_AMOUNT", "setAmount({currency: \"KRW\", value})로 설정해주세요.");
          }
          if (!Number.isInteger(value.value) || value.value < 0) {
            throw tossError("INVALID_AMOUNT", "결제 금액(value)은 0 이상의 정수여야 합니다.");
          }
          amount = { currency: "KRW", value: value.value };
          if (methods) methods.update();
          resolve();
        });
      },
      getAmount: function () {
        return amount;
      },
      renderPaymentMethods: function (options) {
        return new Promise(function (resolve) {
          requireAmount();
          if (methods) {
            throw tossError(
              "ALREADY_RENDERED",
              "결제 수단 위젯은 한 번만 렌더링할 수 있습니다. 금액을 바꾸려면 setAmount()를 사용하세요."
            );
          }
          var container = target(options);
          ensureStylesheet();
          methods = renderMethods(container);
          methods.update();
          resolve(methods.api);
        });
      },
      renderAgreement: function (options) {
        return new Promise(function (resolve) {
          requireAmount();
          if (agreement) {
            throw tossError("ALREADY_RENDERED", "약관 위젯은 한 번만 렌더링할 수 있습니다.");
          }
          var container = target(options);
          ensureStylesheet();
          agreement = renderAgreementBox(container);
          resolve(agreement.api);
        });
      },
      requestPayment: function (params) {
        return new Promise(function (resolve, reject) {
          requireAmount();
          if (!methods) {
            throw tossError(
              "NEED_RENDER_PAYMENT_METHODS",
              "결제 수단 위젯을 먼저 렌더링해주세요. (renderPaymentMethods)"
            );
          }
          if (agreement && !agreement.agreed()) {
            throw tossError("NEED_AGREEMENT_WITH_REQUIRED_TERMS", "필수 약관에 동의해주세요.");
          }
          checkPaymentParams(params);
          var payload = {
            clientKey: clientKey,
            customerKey: customerKey,
            orderId: params.orderId,
            orderName: params.orderName,
            amount: amount.value,
            successUrl: params.successUrl,
            failUrl: params.failUrl,
            method: methods.method(),
            customerEmail: params.customerEmail || null,
            customerName: params.customerName || null,
            customerMobilePhone: params.customerMobilePhone || null,
          };
          fetch(BASE + "/widget/sessions", {
            method: "POST",
            headers: { "Content-Type": "application/json" },
            body: JSON.stringify(payload),
          })
            .then(function (resp) {
              return resp.json().then(function (data) {
                return { ok: resp.ok, data: data || {} };
              });
            })
            .then(function (result) {
              if (!result.ok || !result.data.windowUrl) {
                throw tossError(
                  result.data.code || "UNKNOWN_ERROR",
                  result.data.message || "결제창을 열지 못했습니다."
                );
              }
              // Like the real redirect flow: the page leaves, the promise never settles.
              window.location.assign(result.data.windowUrl);
            })
            .catch(function (err) {
              reject(
                err && err.code ? err : tossError("NETWORK_ERROR", "결제창을 열지 못했습니다.")
              );
            });
        });
      },
    };
  }

  function TossPayments(clientKey) {
    if (typeof clientKey !== "string" || !clientKey) {
      throw tossError("INVALID_CLIENT_KEY", "클라이언트 키(clientKey)가 필요합니다.");
    }
    if (/^(test|live)_(gsk|sk)_/.test(clientKey)) {
      throw tossError(
        "INVALID_CLIENT_KEY",
        "시크릿 키는 브라우저에서 사용할 수 없습니다. 클라이언트 키를 사용해주세요."
      );
    }
    return {
      widgets: function (options) {
        if (/^(test|live)_ck_/.test(clientKey)) {
          throw tossError(
            "INVALID_CLIENT_KEY",
            "결제위젯 연동 키의 클라이언트 키(test_gck_/live_gck_)로 SDK를 연동해주세요. " +
              "API 개별 연동 키(test_ck_/live_ck_)는 결제위젯에서 지원하지 않습니다."
          );
        }
        if (!/^(test|live)_gck_/.test(clientKey)) {
          throw tossError("INVALID_CLIENT_KEY", "올바른 결제위젯 클라이언트 키가 아닙니다.");
        }
        var customerKey = options && options.customerKey;
        if (
          customerKey !== ANONYMOUS &&
          !(typeof customerKey === "string" && CUSTOMER_KEY_RE.test(customerKey))
        ) {
          throw tossError(
            "INVALID_CUSTOMER_KEY",
            "customerKey는 영문 대소문자, 숫자, 특수문자 -, _, =, ., @ 로 2자 이상 50자 이하여야 합니다. " +
              "비회원은 TossPayments.ANONYMOUS를 사용하세요."
          );
        }
        return createWidgets(clientKey, customerKey);
      },
    };
  }

  TossPayments.ANONYMOUS = ANONYMOUS;
  TossPayments.__sandbox = true;
  window.TossPayments = TossPayments;
})();
