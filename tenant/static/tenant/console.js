// The admin console's own script (templates/admin/base_site.html). Select2's search box (the autocomplete of a
// many-to-many field, e.g. an agent's domains) comes without a label: each gets the name of the field it
// searches, also when Select2 draws it again after a change.
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

  document.addEventListener("DOMContentLoaded", function () {
    labelSearchBoxes(document);
    new MutationObserver(function () { labelSearchBoxes(document); })
      .observe(document.body, {childList: true, subtree: true});
  });
})();
