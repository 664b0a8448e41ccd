// Toss payment widget v2 bootstrap. All values come from data- attributes rendered by the
// server; the amount is the stored order amount and is set once, before rendering.
(function () {
  "use strict";
  var root = document.getElementById("checkout");
  var button = document.getElementById("pay-button");
  var errorBox = document.getElementById("checkout-error");
  if (!root || !button) return;
  var d = root.dataset;

  function showError(message) {
    errorBox.textContent = message;
    errorBox.hidden = false;
  }

  async function main() {
    if (typeof window.TossPayments !== "function") {
      showError("결제 모듈을 불러오지 못했습니다. 잠시 후 새로고침해주세요.");
      return;
    }
    var tossPayments = window.TossPayments(d.clientKey);
    var widgets = tossPayments.widgets({ customerKey: d.customerKey });
    await widgets.setAmount({ currency: "KRW", value: Number(d.amount) });
    await Promise.all([
      widgets.renderPaymentMethods({ selector: "#payment-method", variantKey: "DEFAULT" }),
      widgets.renderAgreement({ selector: "#agreement", variantKey: "AGREEMENT" }),
    ]);
    // Escrow (구매안전서비스) when the shop is configured for it: the order's lines as
    // escrowProducts under the two methods whose widget options take them (transfer and virtual
    // account; the widget's card has none). useEscrow true applies it to every such payment
    // (false or absent would leave it to the buyer). Absent when not configured.
    var escrow = d.escrowProducts
      ? { useEscrow: true, escrowProducts: JSON.parse(d.escrowProducts) }
      : null;
    var escrowOptions = escrow ? { transfer: escrow, virtualAccount: escrow } : {};
    button.disabled = false;
    button.addEventListener("click", async function () {
      button.disabled = true;
      try {
        await widgets.requestPayment({
          orderId: d.orderId,
          orderName: d.orderName,
          successUrl: d.successUrl,
          failUrl: d.failUrl,
          // The buyer as stored with the order (validated to Toss's rules on the server);
          // null for an order placed before buyers were asked for.
          customerName: d.customerName || null,
          customerEmail: d.customerEmail || null,
          customerMobilePhone: d.customerMobilePhone || null,
          ...escrowOptions,
        });
      } catch (err) {
        // On a PC the SDK shows the window over this page; closing it rejects with USER_CANCEL
        // (failures and successes leave for failUrl/successUrl instead).
        showError(
          err && err.code === "USER_CANCEL"
            ? "결제를 취소했습니다. 다시 결제하려면 결제하기 버튼을 눌러주세요."
            : (err && err.message) || "결제 요청 중 오류가 발생했습니다."
        );
        button.disabled = false;
      }
    });
  }

  main().catch(function (err) {
    showError((err && err.message) || "결제 창을 준비하지 못했습니다.");
  });
})();
