// The admin console's own script (templates/admin/base_site.html). Select2's search box (the autocomplete of a
// many-to-many field, e.g. an agent's domains) comes without a label: each gets the name of the field it
// searches, also when Select2 draws it again after a change. Likewise the two-list picker's filter icons.
"use strict";
(function () {
  function labelSearchBoxes(root) {
    root.querySelectorAll(".select2-search__field:not([aria-label])").forEach(function (box) {
      const container = box.closest(".select2-container");
      const select = container && container.previousElementSibling;
      const label = select && select.id && document.querySelector('label[for="' + select.id + '"]');
      box.setAttribute("aria-label", label ? "Search " + label.textContent.replace(/:$/, "").trim() : "Search");
    });
  }

  // The filter boxes of a two-list picker (filter_horizontal: SelectFilter2.js, drawn at the window's load) are
  // labelled by a magnifier icon, a <span> with an aria-label and no role: ARIA prohibits a name on a generic
  // element (axe: aria-prohibited-attr). Made what it is, an image with a text alternative, its label still names
  // the box.
  function roleIcons(root) {
    root.querySelectorAll(".selector-filter .search-label-icon[aria-label]:not([role])").forEach(function (icon) {
      icon.setAttribute("role", "img");
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    labelSearchBoxes(document);
    roleIcons(document);
    new MutationObserver(function () { labelSearchBoxes(document); roleIcons(document); })
      .observe(document.body, {childList: true, subtree: true});
  });
})();

// Copy buttons (a secret shown once, the agent's register command): <button data-copy="ID"
// data-copy-status="ID2"> copies the value of the field (or the text of the element) with id ID and says so in the
// element ID2 (role status). Selected first, so that Ctrl+C still works where the clipboard API is not allowed
// (plain http off loopback). Here, a file, not an inline script: a script-src 'self' policy keeps it working.
(function () {
  const BY_HAND = "Selected: press Ctrl+C (\u2318C on a Mac) to copy it.";

  function select(source) {
    if ("value" in source && typeof source.select === "function") {
      source.focus();
      source.select();
      return;
    }
    const range = document.createRange();
    range.selectNodeContents(source);
    const selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }

  document.addEventListener("click", function (event) {
    const button = event.target.closest("button[data-copy]");
    if (!button) return;
    const source = document.getElementById(button.dataset.copy);
    if (!source) return;
    const status = document.getElementById(button.dataset.copyStatus || "");
    const say = function (text) { if (status) status.textContent = text; };
    const text = ("value" in source ? source.value : source.textContent).trim();
    select(source);
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(function () { say("Copied to the clipboard."); },
                                               function () { say(BY_HAND); });
    } else {
      say(document.execCommand && document.execCommand("copy") ? "Copied to the clipboard." : BY_HAND);
    }
  });
})();
