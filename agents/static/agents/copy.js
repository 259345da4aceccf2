// Copy buttons: <button data-copy="ID"> copies the text of the element with that id. A file of ours rather than
// an inline script, so that a Content-Security-Policy without 'unsafe-inline' keeps it working.
"use strict";
(function () {
  function say(button, text) {
    const status = document.querySelector(".copy-status");
    if (status) status.textContent = text;
    const label = button.dataset.label || button.textContent;
    button.dataset.label = label;
    button.textContent = text;
    setTimeout(function () { button.textContent = label; }, 2000);
  }

  function selectText(element) {
    const range = document.createRange();
    range.selectNodeContents(element);
    const selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }

  document.addEventListener("click", function (event) {
    const button = event.target.closest("button[data-copy]");
    if (!button) return;
    const source = document.getElementById(button.dataset.copy);
    if (!source) return;
    const text = source.textContent.trim();
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(
        function () { say(button, "Copied"); },
        function () { selectText(source); say(button, "Selected: press Ctrl+C"); });
    } else {
      // No clipboard API (plain http on another host): select it, so that Ctrl+C copies it.
      selectText(source);
      say(button, document.execCommand && document.execCommand("copy") ? "Copied" : "Selected: press Ctrl+C");
    }
  });
})();
