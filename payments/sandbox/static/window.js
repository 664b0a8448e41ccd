/*
 * The sandbox payment window, when the stand-in (widget.js) shows it in an iframe over the
 * merchant's page, as Toss's SDK does on a PC (windowTarget "iframe"): closing it — the close
 * button or the 결제 취소 outcome — tells the page, whose requestPayment promise then rejects
 * with USER_CANCEL. Nothing reaches the sandbox, so the payment stays READY and nothing is sent.
 * Every other outcome is a form that leaves for the whole tab (<base target="_top">).
 * Shown on its own (windowTarget "self", a phone), this script does nothing: 결제 취소 goes to
 * failUrl with PAY_PROCESS_CANCELED, as Toss's redirect flow does.
 */
(function () {
  "use strict";
  if (window.top === window.self) return;
  document.documentElement.classList.add("embedded");

  // The page that embeds the window (the Referer of an iframe is its parent's address).
  var parentOrigin = "*";
  try {
    if (document.referrer) parentOrigin = new URL(document.referrer).origin;
  } catch (e) {
    parentOrigin = "*";
  }

  function close() {
    window.parent.postMessage({ source: "toss-sandbox-window", type: "USER_CANCEL" }, parentOrigin);
  }

  document.addEventListener("DOMContentLoaded", function () {
    var button = document.querySelector('[data-action="close"]');
    if (button) button.hidden = false;
  });
  document.addEventListener("click", function (event) {
    var target = event.target && event.target.closest
      ? event.target.closest('[data-action="close"], [data-scenario="cancel_by_user"]')
      : null;
    if (!target) return;
    event.preventDefault();
    close();
  });
})();
