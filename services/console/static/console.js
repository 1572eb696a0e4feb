// Live pages: the server says when what the pages show changed (server-sent events); this
// script fetches the page again and swaps in its live parts ([data-live] elements by id), so
// forms being filled in elsewhere on the page are left alone. No other script runs (CSP).
"use strict";
(function () {
  const stream = document.body.dataset.liveStream;
  if (!stream || !window.EventSource) return;
  let busy = false, again = false;
  async function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    try {
      const res = await fetch(location.href, {
        headers: { "X-Console-Partial": "1" }, credentials: "same-origin",
      });
      if (res.redirected || !res.ok) return;
      const doc = new DOMParser().parseFromString(await res.text(), "text/html");
      for (const fresh of doc.querySelectorAll("[data-live][id]")) {
        const here = document.getElementById(fresh.id);
        if (here) here.replaceChildren(...fresh.childNodes);
      }
      document.body.dataset.version = String(Date.now());
    } finally {
      busy = false;
      if (again) { again = false; refresh(); }
    }
  }
  const source = new EventSource(stream);
  source.addEventListener("update", refresh);
})();
