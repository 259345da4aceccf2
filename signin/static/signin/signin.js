// The sign-in pages' one script (no inline script): "Show" buttons beside password fields. Without it the
// buttons stay hidden and the fields work as plain password fields.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  for (const button of document.querySelectorAll("button[data-reveals]")) {
    const field = document.getElementById(button.dataset.reveals);
    if (!field) continue;
    button.hidden = false;
    button.addEventListener("click", () => {
      const show = field.type === "password";
      field.type = show ? "text" : "password";
      // The name stays "Show password" (label in name, WCAG 2.5.3); aria-pressed says whether it is shown.
      button.setAttribute("aria-pressed", String(show));
      field.focus();
    });
    // Back to a password field before the form is sent: browsers keep the values of text fields in their
    // form history, never those of password fields.
    field.form?.addEventListener("submit", () => {
      field.type = "password";
      button.setAttribute("aria-pressed", "false");
    });
  }
});
