// incident-bridge's one script (progressive enhancement: the pages work without it).
// On an incident's page: listen to its Server-Sent Events and, when its timeline changes,
// append the new entries and replace the status block, both rendered by the server.
"use strict";
(function () {
  const body = document.body;
  const id = body.dataset.incident;
  const timeline = document.getElementById("timeline");
  const live = document.getElementById("live");
  if (!id || !timeline || !live || !window.EventSource) return;

  let last = Number(body.dataset.last || 0);
  let busy = Promise.resolve();

  async function fetchText(url) {
    const r = await fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } });
    if (!r.ok) throw new Error(url + ": " + r.status);
    return r.text();
  }

  async function refresh() {
    const html = await fetchText("/incidents/" + id + "/fragments/timeline?after=" + last);
    const box = document.createElement("template");
    box.innerHTML = html; // server-rendered, every value escaped by the server's templates
    for (const li of box.content.querySelectorAll("li")) {
      const n = Number(li.dataset.id || 0);
      if (n && n <= last) continue; // already shown
      if (!n && li.classList.contains("day")) {
        const shown = timeline.querySelectorAll("li.day h3");
        const day = li.textContent.trim();
        if (shown.length && shown[shown.length - 1].textContent.trim() === day) continue;
      }
      if (n) { li.classList.add("fresh"); last = n; }
      timeline.appendChild(li);
    }
    body.dataset.last = String(last);
    const summary = document.getElementById("summary");
    if (summary && !summary.contains(document.activeElement)) {
      const fresh = document.createElement("template");
      fresh.innerHTML = await fetchText("/incidents/" + id + "/fragments/summary");
      const next = fresh.content.getElementById("summary");
      if (next) summary.replaceWith(next);
    }
  }

  const source = new EventSource("/incidents/" + id + "/live?after=" + last);
  source.addEventListener("open", function () { live.textContent = "Live"; });
  source.addEventListener("error", function () { live.textContent = "Reconnecting…"; });
  // The session ended (signed out here or elsewhere): no more updates, no reconnecting.
  source.addEventListener("signedout", function () {
    source.close();
    live.textContent = "Signed out: reload to sign in";
  });
  source.addEventListener("change", function () {
    busy = busy.then(refresh).catch(function () { live.textContent = "Reload for updates"; });
  });
})();
