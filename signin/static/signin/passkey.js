// Passkeys on the sign-in pages (served by the portal; no inline script, nothing from elsewhere).
// A form marked data-passkey="get" or "create" holds its ceremony's options in the JSON element its
// data-options names; its button (data-factor="passkey") runs navigator.credentials.get() or .create(),
// writes the browser's answer into the form's hidden "credential" field as JSON and sends the form. The portal
// checks everything (origin, RP ID, challenge, signature, counter); this script only carries bytes.
// Without JavaScript the button stays hidden and the page's <noscript> says a passkey needs it.
"use strict";
(() => {
  const fromB64url = (text) => {
    const b64 = text.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((text.length + 3) % 4);
    return Uint8Array.from(atob(b64), (c) => c.charCodeAt(0)).buffer;
  };
  const toB64url = (buffer) => {
    let binary = "";
    for (const byte of new Uint8Array(buffer)) binary += String.fromCharCode(byte);
    return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  };

  const requestOptions = (options) => ({
    ...options,
    challenge: fromB64url(options.challenge),
    allowCredentials: (options.allowCredentials || []).map((c) => ({ ...c, id: fromB64url(c.id) })),
  });
  const creationOptions = (options) => ({
    ...options,
    challenge: fromB64url(options.challenge),
    user: { ...options.user, id: fromB64url(options.user.id) },
    excludeCredentials: (options.excludeCredentials || []).map((c) => ({ ...c, id: fromB64url(c.id) })),
  });

  const answer = (credential) => {
    const response = credential.response;
    const json = {
      id: credential.id,
      rawId: toB64url(credential.rawId),
      type: credential.type,
      clientExtensionResults: credential.getClientExtensionResults ? credential.getClientExtensionResults() : {},
      authenticatorAttachment: credential.authenticatorAttachment || undefined,
      response: { clientDataJSON: toB64url(response.clientDataJSON) },
    };
    if (response.attestationObject) {
      json.response.attestationObject = toB64url(response.attestationObject);
      json.response.transports = response.getTransports ? response.getTransports() : [];
    } else {
      json.response.authenticatorData = toB64url(response.authenticatorData);
      json.response.signature = toB64url(response.signature);
      if (response.userHandle) json.response.userHandle = toB64url(response.userHandle);
    }
    return JSON.stringify(json);
  };

  const start = async (form, button, status) => {
    const source = document.getElementById(form.dataset.options);
    if (!source) return;
    const options = JSON.parse(source.textContent);
    button.disabled = true;
    status.textContent = "";
    try {
      const credential = form.dataset.passkey === "create"
        ? await navigator.credentials.create({ publicKey: creationOptions(options) })
        : await navigator.credentials.get({ publicKey: requestOptions(options) });
      form.elements.credential.value = answer(credential);
      form.submit();
    } catch (error) {
      // Cancelled, timed out, or no passkey here: say so, and let the person try again or use the other factor.
      status.textContent = "The passkey was not used (" + (error && error.name ? error.name : "error") +
        "). Try again" + (document.querySelector("[data-factor='totp']") ? ", or use a code instead." : ".");
      button.disabled = false;
    }
  };

  document.addEventListener("DOMContentLoaded", () => {
    const supported = window.PublicKeyCredential !== undefined && navigator.credentials !== undefined;
    for (const form of document.querySelectorAll("form[data-passkey]")) {
      const button = form.querySelector("[data-factor='passkey']");
      const status = form.querySelector(".passkey-status");
      if (!button || !status) continue;
      if (!supported) {
        status.textContent = "This browser cannot use passkeys here.";
        continue;
      }
      button.hidden = false;
      button.addEventListener("click", () => start(form, button, status));
    }
  });
})();
