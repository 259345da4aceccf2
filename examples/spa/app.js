// A browser-only OpenID Connect client (a public client: no secret) of the portal: the authorization code flow
// with PKCE S256, all in this page. No framework, no build step, nothing fetched but the portal's endpoints.
//
// Open it as index.html?portal=http://127.0.0.1:8000&client_id=…; both are kept in sessionStorage across the
// redirects. The redirect URI is this page's own address (origin and path), registered exactly with
// `app_register --public --redirect-uri … --allowed-origin <this page's origin>`.
//
// Tokens stay in memory only (a reload forgets them: "Renew silently" gets new ones while the portal session
// lasts). Public clients get no refresh token, by design.
"use strict";

const CONFIG_KEY = "spa.config";        // {portal, clientId}
const PENDING_KEY = "spa.authorization"; // {state, nonce, verifier}: one sign-in in flight
const LOGOUT_KEY = "spa.logout";        // the state sent to the end_session_endpoint
const SCOPE = "openid profile email";
const REDIRECT_URI = location.origin + location.pathname;
// The last ID token, in memory like the other tokens: the sign-out sends it as id_token_hint, without which the
// portal ends on its own signed-out page instead of coming back here.
let idToken = null;

const $ = (id) => document.getElementById(id);

// --- what the page shows ---------------------------------------------------------------------------------

function show(state, message) {
  $("app").dataset.state = state;
  $("status").textContent = message;
}

// `code` is stable for tests and scripts (data-error): an OAuth error code, or one of ours (network, state_mismatch,
// iss_mismatch, id_token_invalid, userinfo_failed).
function showError(code, message) {
  show("error", "Not signed in.");
  $("error").dataset.error = code;
  $("error").textContent = message ? `${code}: ${message}` : code;
  $("error").hidden = false;
}

function showUser(claims, tokens) {
  $("who").textContent = claims.name || claims.preferred_username || claims.upn || claims.sub;
  $("upn").textContent = claims.upn || "";
  $("sub").textContent = claims.sub;
  $("tid").textContent = claims.tid || "";
  $("email").textContent = claims.email || "";
  $("expires").textContent = new Date(Date.now() + tokens.expires_in * 1000).toLocaleTimeString();
  $("refresh").textContent = tokens.refresh_token ? "present" : "none";
  $("signed-in").hidden = false;
  $("sign-in").hidden = true;
  $("sign-out").hidden = false;
  show("signed-in", "Signed in. The token exchange and /userinfo/ were cross-origin fetches from this page.");
}

// --- small helpers -----------------------------------------------------------------------------------------

function base64url(bytes) {
  let binary = "";
  for (const byte of new Uint8Array(bytes)) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function randomToken(size = 32) {
  return base64url(crypto.getRandomValues(new Uint8Array(size)));
}

async function s256(verifier) {
  return base64url(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier)));
}

// The ID token's claims. Its signature is not checked here: it came straight from the token endpoint over a
// connection this page opened itself (OpenID Connect Core 3.1.3.7, item 6); its iss, aud, nonce and exp are.
function idTokenClaims(idToken) {
  const payload = idToken.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
  const binary = atob(payload + "=".repeat((4 - (payload.length % 4)) % 4));
  return JSON.parse(new TextDecoder().decode(Uint8Array.from(binary, (c) => c.charCodeAt(0))));
}

// fetch, with a failure that never reached a readable answer (refused by CORS, portal down) told apart.
async function portalFetch(url, options) {
  try {
    return await fetch(url, { credentials: "omit", cache: "no-store", ...options });
  } catch (error) {
    const failure = new Error(`the portal's answer could not be read from ${location.origin} (network error, or CORS: ` +
                              `this origin is not registered for the application): ${error.message}`);
    failure.code = "network";
    throw failure;
  }
}

function configuration() {
  const query = new URLSearchParams(location.search);
  if (query.get("portal") && query.get("client_id")) {
    sessionStorage.setItem(CONFIG_KEY, JSON.stringify({
      portal: query.get("portal").replace(/\/+$/, ""), clientId: query.get("client_id"),
    }));
  }
  return JSON.parse(sessionStorage.getItem(CONFIG_KEY) || "null");
}

async function discover(config) {
  const response = await portalFetch(`${config.portal}/.well-known/openid-configuration`);
  const metadata = await response.json();
  if (metadata.issuer !== config.portal) { // OpenID Connect Discovery 4.3
    throw Object.assign(new Error(`discovery names ${metadata.issuer}, not ${config.portal}`), { code: "iss_mismatch" });
  }
  return metadata;
}

// --- the flow ------------------------------------------------------------------------------------------------

async function authorize(config, metadata, prompt) {
  const pending = { state: randomToken(16), nonce: randomToken(16), verifier: randomToken(32) };
  sessionStorage.setItem(PENDING_KEY, JSON.stringify(pending));
  const query = new URLSearchParams({
    response_type: "code", client_id: config.clientId, redirect_uri: REDIRECT_URI, scope: SCOPE,
    state: pending.state, nonce: pending.nonce,
    code_challenge: await s256(pending.verifier), code_challenge_method: "S256",
  });
  if (prompt) query.set("prompt", prompt); // "none": never a page; a code, or login_required
  location.assign(`${metadata.authorization_endpoint}?${query}`);
}

// Back from /authorize/ (code or error) with state and iss (RFC 9207) to check first.
async function completeAuthorization(config, metadata, answer) {
  const pending = JSON.parse(sessionStorage.getItem(PENDING_KEY) || "null");
  sessionStorage.removeItem(PENDING_KEY); // one use, whatever happens next
  if (!pending || answer.get("state") !== pending.state) {
    throw Object.assign(new Error("this answer is not for a sign-in started here"), { code: "state_mismatch" });
  }
  if (answer.get("iss") !== metadata.issuer) {
    throw Object.assign(new Error(`iss is ${answer.get("iss")}, expected ${metadata.issuer}`), { code: "iss_mismatch" });
  }
  if (answer.get("error")) {
    throw Object.assign(new Error(answer.get("error_description") || ""), { code: answer.get("error") });
  }

  const response = await portalFetch(metadata.token_endpoint, {
    method: "POST", // a form body: a CORS "simple" request, no preflight
    body: new URLSearchParams({
      grant_type: "authorization_code", code: answer.get("code"), redirect_uri: REDIRECT_URI,
      client_id: config.clientId, code_verifier: pending.verifier,
    }),
  });
  const tokens = await response.json();
  if (!response.ok) {
    throw Object.assign(new Error(tokens.error_description || ""), { code: tokens.error || `http_${response.status}` });
  }

  const idClaims = idTokenClaims(tokens.id_token);
  idToken = tokens.id_token;
  const audience = [].concat(idClaims.aud);
  if (idClaims.iss !== metadata.issuer || !audience.includes(config.clientId) || idClaims.nonce !== pending.nonce
      || idClaims.exp * 1000 < Date.now()) {
    throw Object.assign(new Error("iss, aud, nonce or exp is not as sent"), { code: "id_token_invalid" });
  }

  const info = await portalFetch(metadata.userinfo_endpoint, {
    headers: { Authorization: `Bearer ${tokens.access_token}` }, // never in the URL
  });
  if (!info.ok) throw Object.assign(new Error(`HTTP ${info.status}`), { code: "userinfo_failed" });
  const claims = await info.json();
  if (claims.sub !== idClaims.sub) { // OpenID Connect Core 5.3.2
    throw Object.assign(new Error("userinfo is about someone else"), { code: "userinfo_failed" });
  }
  showUser({ ...idClaims, ...claims }, tokens);
}

function signOut(config, metadata) {
  const state = randomToken(16);
  sessionStorage.setItem(LOGOUT_KEY, state);
  const query = new URLSearchParams({ client_id: config.clientId, post_logout_redirect_uri: REDIRECT_URI, state });
  if (idToken) query.set("id_token_hint", idToken);
  location.assign(`${metadata.end_session_endpoint}?${query}`);
}

async function main() {
  const config = configuration();
  const answer = new URLSearchParams(location.search);
  // The code and our configuration are not for the address bar, the history or a bookmark.
  history.replaceState(null, "", REDIRECT_URI);
  if (!config) {
    $("configure").hidden = false;
    show("unconfigured", "Open this page as index.html?portal=…&client_id=… or fill in:");
    return;
  }

  const metadata = await discover(config);
  $("sign-in").onclick = () => authorize(config, metadata).catch((e) => showError(e.code || "error", e.message));
  $("renew").onclick = () => authorize(config, metadata, "none").catch((e) => showError(e.code || "error", e.message));
  $("sign-out").onclick = () => signOut(config, metadata);
  $("actions").hidden = false;

  if (answer.has("code") || answer.has("error")) {
    show("working", "Completing the sign-in…");
    await completeAuthorization(config, metadata, answer);
  } else if (answer.has("state") && answer.get("state") === sessionStorage.getItem(LOGOUT_KEY)) {
    sessionStorage.removeItem(LOGOUT_KEY);
    show("signed-out", "Signed out of the portal.");
  } else {
    show("signed-out", "Not signed in.");
  }
}

main().catch((error) => showError(error.code || "error", error.message));
