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

// Sealing in the browser (docs/SECURITY.md, "The portal never holds the password"): on a form marked
// data-seal, the passwords are sealed with WebCrypto for each candidate agent's key, in the envelope the agent
// opens (RSA-OAEP-SHA256 wraps a fresh AES-256-GCM key; the associated data, given by the portal, binds request
// id, tenant, key id, expiry and kind), and only the envelopes are posted: the password fields have no name.
// Without WebCrypto, or with no agent connected to seal for, the fields get their names back and the form is
// posted as without JavaScript.
const SEAL_ALGORITHM = "RSA-OAEP-256+A256GCM";
const SEAL_FIELDS = { password: ["password"], password_change: ["current_password", "new_password", "confirm_password"] };

const base64 = (bytes) => {
  let text = "";
  for (const byte of new Uint8Array(bytes)) text += String.fromCharCode(byte);
  return btoa(text);
};
const unbase64 = (text) => Uint8Array.from(atob(text), (c) => c.charCodeAt(0));

async function sealFor(candidate, plain) {
  const agentKey = await crypto.subtle.importKey(
    "spki", unbase64(candidate.spki), { name: "RSA-OAEP", hash: "SHA-256" }, false, ["encrypt"]);
  const contentKey = await crypto.subtle.generateKey({ name: "AES-GCM", length: 256 }, true, ["encrypt"]);
  const nonce = crypto.getRandomValues(new Uint8Array(12));
  const data = await crypto.subtle.encrypt(
    { name: "AES-GCM", iv: nonce, additionalData: unbase64(candidate.aad) }, contentKey, plain);
  const wrapped = await crypto.subtle.encrypt(
    { name: "RSA-OAEP" }, agentKey, await crypto.subtle.exportKey("raw", contentKey));
  return { alg: SEAL_ALGORITHM, key: base64(wrapped), nonce: base64(nonce), data: base64(data) };
}

function sealError(form, message) {
  let shown = form.querySelector("#seal-error");
  if (!shown) {
    shown = document.createElement("p");
    shown.id = "seal-error";
    shown.className = "error";
    shown.setAttribute("role", "alert");
    form.querySelector(".actions").before(shown);
  }
  shown.textContent = message;
}

async function ticketNow(form, kind) {
  // The ticket of the username step while it is fresh and one of its agents is still connected, else a new one
  // for the agents connected now: asked just before sealing, so the person never types anything again.
  const body = new URLSearchParams({ kind, csrfmiddlewaretoken: form.elements.csrfmiddlewaretoken.value });
  const answer = await fetch("/login/password/seal/", { method: "POST", body, credentials: "same-origin" });
  if (answer.status === 409) {
    window.location.assign("/login/");
    return null;
  }
  if (!answer.ok) throw new Error(`ticket: ${answer.status}`);
  return answer.json();
}

function sealing(form) {
  const kind = form.dataset.seal;
  const inputs = (SEAL_FIELDS[kind] || []).map((name) => form.elements.namedItem(name));
  if (!inputs.length || inputs.some((input) => !input) || !(window.crypto && crypto.subtle)) return;
  for (const input of inputs) {
    input.dataset.name = input.name;
    input.removeAttribute("name");
  }
  const plainly = () => {
    for (const input of inputs) input.name = input.dataset.name;
    form.submit();
  };
  let busy = false;
  // Back to this page from the browser's cache (the back button): ready to seal again, for a new ticket.
  window.addEventListener("pageshow", (event) => {
    if (!event.persisted) return;
    busy = false;
    form.querySelector("input[name=sealed]")?.remove();
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (busy) return;
    const values = inputs.map((input) => input.value);
    if (values.some((value) => !value)) {
      sealError(form, kind === "password" ? "Enter your password." : "Fill in every password field.");
      return;
    }
    if (kind === "password_change" && values[1] !== values[2]) {
      sealError(form, "The new passwords don't match.");
      return;
    }
    busy = true;
    try {
      const ticket = await ticketNow(form, kind);
      if (!ticket) return;
      if (!ticket.candidates.length) {
        plainly(); // no agent is connected to seal for: the portal answers as without JavaScript
        return;
      }
      const plain = new TextEncoder().encode(kind === "password" ? values[0]
        : JSON.stringify({ current: values[0], new: values[1], confirm: values[2] }));
      const envelopes = {};
      for (const candidate of ticket.candidates) envelopes[candidate.key_id] = await sealFor(candidate, plain);
      plain.fill(0);
      const sealed = document.createElement("input");
      sealed.type = "hidden";
      sealed.name = "sealed";
      sealed.value = JSON.stringify({ request_id: ticket.request_id, envelopes });
      form.append(sealed);
      form.submit();
    } catch (error) {
      busy = false;
      sealError(form, "Your password could not be protected for sending. Try again.");
    }
  });
}

document.addEventListener("DOMContentLoaded", () => {
  for (const form of document.querySelectorAll("form[data-seal]")) sealing(form);
});
