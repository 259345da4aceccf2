// The health page's live part is fetched again every few seconds and swapped in place: no reload, so the
// scroll position stays where the administrator left it. A tab in the background asks nothing until it is
// shown again; an answer that is not the live part (an error, or a redirect to sign in) marks the page stale.
(function () {
  "use strict";
  const live = document.getElementById("health-live");
  const stale = document.getElementById("health-stale");
  if (!live) {
    return;
  }
  let busy = false;

  async function refresh() {
    if (busy || document.hidden) {
      return;
    }
    busy = true;
    try {
      const url = new URL(window.location.href);
      url.searchParams.set("live", "1");
      const response = await fetch(url, {credentials: "same-origin", cache: "no-store"});
      if (!response.ok || response.redirected) {
        throw new Error("status " + response.status);
      }
      live.innerHTML = await response.text();
      stale.hidden = true;
    } catch (error) {
      stale.hidden = false;
    } finally {
      busy = false;
    }
  }

  window.setInterval(refresh, Number(live.dataset.refreshSeconds) * 1000);
  document.addEventListener("visibilitychange", refresh);
})();
