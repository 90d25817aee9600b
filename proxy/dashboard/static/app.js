// relaylog's shared page script: the theme toggle and the JSON API helper the views use.
// Data from the log is only ever set as textContent: no markup is built from strings here.
"use strict";

const relaylog = (function () {
  const root = document.documentElement;

  function currentTheme() {
    if (root.dataset.theme) return root.dataset.theme;
    return window.matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
  }

  function toggleTheme() {
    const next = currentTheme() === "dark" ? "light" : "dark";
    root.dataset.theme = next;
    try {
      localStorage.setItem("relaylog-theme", next);
    } catch (e) {
      // Not remembered; the page still switches.
    }
  }

  // Call the JSON API from this page: same origin, JSON body, the key cookie goes along.
  async function api(method, path, body) {
    const init = { method: method, credentials: "same-origin", headers: {} };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(path, init);
    let payload = null;
    try {
      payload = await response.json();
    } catch (e) {
      payload = null;
    }
    if (!response.ok || (payload && payload.error)) {
      const message = payload && payload.error ? payload.error : response.status + " " + response.statusText;
      throw new Error(message);
    }
    return payload ? payload.data : null;
  }

  // Fetch a part the server rendered (escaped) and return it parsed, never as a string of markup.
  async function part(url) {
    const response = await fetch(url, { credentials: "same-origin" });
    const text = await response.text();
    if (!response.ok) throw new Error(text || response.status + " " + response.statusText);
    return { doc: new DOMParser().parseFromString(text, "text/html"), response: response };
  }

  function notice(text, bad) {
    const box = document.getElementById("notice");
    if (!box) return;
    box.textContent = text;
    box.classList.toggle("bad", Boolean(bad));
    box.hidden = !text;
  }

  const toggle = document.getElementById("theme-toggle");
  if (toggle) toggle.addEventListener("click", toggleTheme);

  return { api: api, part: part, notice: notice };
})();
