"use strict";
// The Copy button beside a secret the admin console shows once (applications: a new client secret). A file of its
// own, not an inline script, so a Content-Security-Policy of script-src 'self' keeps it working. The secret is
// selected first, so that Ctrl+C still works where the clipboard API is not allowed (plain http off loopback).
document.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-copy]");
  if (!button) return;
  const field = document.getElementById(button.dataset.copy);
  const status = document.getElementById(button.dataset.copyStatus || "");
  const say = (text) => { if (status) status.textContent = text; };
  if (!field) return;
  field.focus();
  field.select();
  const byHand = "Selected: press Ctrl+C (\u2318C on a Mac) to copy it.";
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(field.value).then(() => say("Copied to the clipboard."), () => say(byHand));
  } else {
    say(document.execCommand("copy") ? "Copied to the clipboard." : byHand);
  }
});
