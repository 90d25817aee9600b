// The requests list: count, older pages, live tail, selection and datasets, the detail drawer,
// keyboard moves. Rows and the drawer are rendered (escaped) by the server and moved in as parsed
// elements; what the script writes itself is textContent. Writes go to the JSON API.
"use strict";

(function () {
  const toolbar = document.getElementById("toolbar");
  const tbody = document.getElementById("rows");
  const drawer = document.getElementById("drawer");
  const help = document.getElementById("keys-help");
  if (!toolbar || !tbody || !drawer) return;
  const view = toolbar.dataset.view;
  const tree = JSON.parse(toolbar.dataset.tree);
  const tailMs = Number(toolbar.dataset.tailMs) || 3000;
  const listUrl = "/requests" + (view ? "?" + view : "");

  function rowsUrl(extra) {
    const params = new URLSearchParams(view);
    for (const [key, value] of Object.entries(extra)) params.set(key, value);
    return "/requests/rows?" + params.toString();
  }

  function detailUrl(id) {
    return "/requests/" + encodeURIComponent(id) + (view ? "?" + view : "");
  }

  function allRows() {
    return Array.from(tbody.querySelectorAll("tr[data-id]"));
  }

  function rowOf(id) {
    return allRows().find((tr) => tr.dataset.id === id) || null;
  }

  function rowsOf(doc) {
    return Array.from(doc.querySelectorAll("tr[data-id]")).map((tr) => document.adoptNode(tr));
  }

  // --- the count, loaded apart from the rows -------------------------------------------------
  const count = document.getElementById("count");
  async function loadCount() {
    try {
      const response = await fetch(count.dataset.url, { credentials: "same-origin" });
      if (!response.ok) throw new Error(await response.text());
      const data = await response.json();
      count.textContent = data.text;
      document.getElementById("count-noun").textContent = data.text === "1" ? "request" : "requests";
      count.title = data.capped ? "at least this many; counting stops there" : "";
    } catch (error) {
      count.textContent = "?";
      count.title = String(error.message || error);
    }
  }
  loadCount();

  // --- older pages -----------------------------------------------------------------------------
  const more = document.getElementById("more");
  if (more) {
    more.addEventListener("click", async (event) => {
      event.preventDefault();
      more.setAttribute("aria-busy", "true");
      try {
        const { doc, response } = await relaylog.part(rowsUrl({ cursor: more.dataset.cursor }));
        for (const tr of rowsOf(doc)) if (!rowOf(tr.dataset.id)) tbody.appendChild(tr);
        const next = response.headers.get("Relaylog-Next-Cursor");
        if (next) more.dataset.cursor = next;
        else more.parentElement.remove();
      } catch (error) {
        relaylog.notice(String(error.message || error), true);
      } finally {
        more.removeAttribute("aria-busy");
      }
    });
  }

  // --- live tail: only rows newer than the newest shown, paused while the tab is hidden --------
  const tail = document.getElementById("tail");
  let tailTimer = null;
  async function tailOnce() {
    if (document.hidden) return;
    const newest = allRows()[0];
    try {
      // Rows after the newest shown come oldest first; an empty list takes the first page.
      const after = newest ? { after_time: newest.dataset.created, after_id: newest.dataset.id } : {};
      const { doc } = await relaylog.part(rowsUrl(after));
      const found = rowsOf(doc);
      if (!newest) found.reverse();
      let added = 0;
      for (const tr of found) {
        if (rowOf(tr.dataset.id)) continue;
        tr.classList.add("fresh");
        tbody.insertBefore(tr, tbody.firstChild);
        added += 1;
      }
      const empty = document.querySelector(".table-wrap .empty");
      if (empty && allRows().length) empty.remove();
      // The count above the list goes up with the rows the tail brought in.
      if (added) loadCount();
    } catch (error) {
      relaylog.notice("live tail: " + String(error.message || error), true);
    }
  }
  tail.addEventListener("change", () => {
    clearInterval(tailTimer);
    tailTimer = tail.checked ? setInterval(tailOnce, tailMs) : null;
    if (tail.checked) tailOnce();
  });
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && tail.checked) tailOnce();
  });

  // --- selection and datasets ------------------------------------------------------------------
  const selectAll = document.getElementById("select-all");
  const addSelected = document.getElementById("add-selected");
  const addMatching = document.getElementById("add-matching");
  const removeSelected = document.getElementById("remove-selected");
  const datasetName = document.getElementById("dataset-name");

  function selectedIds() {
    return Array.from(tbody.querySelectorAll("input.select:checked")).map((box) => box.value);
  }
  function selectionChanged() {
    const none = selectedIds().length === 0;
    addSelected.disabled = none;
    if (removeSelected) removeSelected.disabled = none;
  }
  tbody.addEventListener("change", (event) => {
    if (event.target.matches("input.select")) selectionChanged();
  });
  selectAll.addEventListener("change", () => {
    for (const box of tbody.querySelectorAll("input.select")) box.checked = selectAll.checked;
    selectionChanged();
  });

  function knownDataset(name) {
    return Array.from(document.querySelectorAll("#dataset-names option")).some((o) => o.value === name);
  }

  async function addToDataset(ids, filter) {
    const name = datasetName.value.trim();
    if (!name) {
      relaylog.notice("Name the dataset first (a new name creates it).", true);
      datasetName.focus();
      return;
    }
    try {
      let result;
      if (knownDataset(name)) {
        const body = filter ? { addFilter: filter } : { addRequests: ids };
        result = await relaylog.api("POST", "/v1/helicone-dataset/" + encodeURIComponent(name) + "/mutate", body);
      } else {
        const body = filter ? { datasetName: name, filter: filter } : { datasetName: name, requestIds: ids };
        result = await relaylog.api("POST", "/v1/helicone-dataset", body);
        const option = document.createElement("option");
        option.value = name;
        document.getElementById("dataset-names").appendChild(option);
      }
      relaylog.notice("Dataset " + name + ": " + result.added + " added, " + result.rows + " rows in all.");
    } catch (error) {
      relaylog.notice("Dataset " + name + ": " + String(error.message || error), true);
    }
  }
  addSelected.addEventListener("click", () => addToDataset(selectedIds(), null));
  addMatching.addEventListener("click", () => addToDataset([], tree));
  if (removeSelected) {
    removeSelected.addEventListener("click", async () => {
      const name = removeSelected.dataset.dataset;
      const ids = selectedIds();
      try {
        const result = await relaylog.api("POST", "/v1/helicone-dataset/" + encodeURIComponent(name) + "/mutate", { removeRequests: ids });
        for (const id of ids) {
          const tr = rowOf(id);
          if (tr) tr.remove();
        }
        selectionChanged();
        relaylog.notice("Dataset " + name + ": " + result.removed + " removed, " + result.rows + " rows left.");
      } catch (error) {
        relaylog.notice("Dataset " + name + ": " + String(error.message || error), true);
      }
    });
  }

  // --- "copy as API call" ----------------------------------------------------------------------
  const copy = document.getElementById("copy-curl");
  copy.addEventListener("click", async () => {
    const text = document.getElementById("curl").textContent;
    try {
      await navigator.clipboard.writeText(text);
      copy.textContent = "Copied";
    } catch (error) {
      const range = document.createRange();
      range.selectNodeContents(document.getElementById("curl"));
      window.getSelection().removeAllRanges();
      window.getSelection().addRange(range);
      copy.textContent = "Selected: press Ctrl+C";
    }
  });

  // --- the drawer ------------------------------------------------------------------------------
  let current = null;

  function mark(tr) {
    for (const other of tbody.querySelectorAll("tr.current")) other.classList.remove("current");
    current = tr;
    if (tr) {
      tr.classList.add("current");
      tr.scrollIntoView({ block: "nearest" });
    }
  }

  async function openDrawer(id, push) {
    try {
      const { doc } = await relaylog.part(drawerUrl(id));
      const detail = doc.getElementById("detail");
      if (!detail) throw new Error("no detail in the answer");
      drawer.replaceChildren(document.adoptNode(detail));
      drawer.hidden = false;
      mark(rowOf(id));
      if (push) history.pushState({ id: id }, "", detailUrl(id));
    } catch (error) {
      relaylog.notice(String(error.message || error), true);
    }
  }

  function drawerUrl(id) {
    return "/requests/" + encodeURIComponent(id) + "/drawer";
  }

  function closeDrawer(push) {
    drawer.hidden = true;
    drawer.replaceChildren();
    if (push) history.pushState({}, "", listUrl);
  }

  async function refreshRow(id) {
    const only = JSON.stringify({ request: { id: { equals: id } } });
    const params = new URLSearchParams(view);
    params.append("filter", only);
    try {
      const { doc } = await relaylog.part("/requests/rows?" + params.toString());
      const fresh = rowsOf(doc)[0];
      const old = rowOf(id);
      if (fresh && old) {
        fresh.querySelector("input.select").checked = old.querySelector("input.select").checked;
        old.replaceWith(fresh);
        if (current === old) mark(fresh);
      }
    } catch (error) {
      relaylog.notice(String(error.message || error), true);
    }
  }

  async function write(id, method, path, body) {
    const problem = document.getElementById("drawer-problem");
    try {
      await relaylog.api(method, path, body);
      await openDrawer(id, false);
      await refreshRow(id);
    } catch (error) {
      if (problem) {
        problem.textContent = String(error.message || error);
        problem.hidden = false;
      }
    }
  }

  tbody.addEventListener("click", (event) => {
    if (event.target.closest("input.select")) return;
    // A modified click on the time link opens the deep link in a new tab, as links do.
    if (event.ctrlKey || event.metaKey || event.shiftKey || event.button !== 0) return;
    const tr = event.target.closest("tr[data-id]");
    if (!tr) return;
    event.preventDefault();
    openDrawer(tr.dataset.id, true);
  });

  drawer.addEventListener("click", (event) => {
    const detail = document.getElementById("detail");
    if (!detail) return;
    const id = detail.dataset.id;
    if (event.target.closest("#drawer-close")) {
      closeDrawer(true);
      return;
    }
    const rate = event.target.closest("button.rate");
    if (rate) {
      const comment = document.getElementById("feedback-comment").value;
      const body = { rating: rate.dataset.rating === "true" };
      if (comment) body.comment = comment;
      write(id, "POST", "/v1/request/" + encodeURIComponent(id) + "/feedback", body);
    }
  });

  drawer.addEventListener("submit", (event) => {
    const detail = document.getElementById("detail");
    if (!detail) return;
    event.preventDefault();
    const id = detail.dataset.id;
    const data = new FormData(event.target);
    if (event.target.id === "score-form") {
      const text = String(data.get("value")).trim();
      let value;
      if (text === "true" || text === "false") value = text === "true";
      else value = Number(text);
      if (typeof value === "number" && (!text || !Number.isFinite(value))) {
        const problem = document.getElementById("drawer-problem");
        problem.textContent = "A score is a number, true or false.";
        problem.hidden = false;
        return;
      }
      const scores = {};
      scores[String(data.get("name")).trim()] = value;
      write(id, "POST", "/v1/request/" + encodeURIComponent(id) + "/score", { scores: scores });
    } else if (event.target.id === "property-form") {
      const body = { key: String(data.get("key")).trim(), value: String(data.get("value")) };
      write(id, "PUT", "/v1/request/" + encodeURIComponent(id) + "/property", body);
    }
  });

  window.addEventListener("popstate", () => {
    const match = location.pathname.match(/^\/requests\/([^/]+)$/);
    if (match) openDrawer(decodeURIComponent(match[1]), false);
    else closeDrawer(false);
  });

  // --- keys: j/k or arrows move, Enter opens, Esc closes, x selects, ? lists them -------------
  const opened = document.getElementById("detail");
  if (opened) mark(rowOf(opened.dataset.id));

  function move(step) {
    const rows = allRows();
    if (!rows.length) return;
    const at = current ? rows.indexOf(current) : -1;
    const next = rows[Math.min(rows.length - 1, Math.max(0, at + step))];
    if (!next || next === current) return;
    mark(next);
    if (!drawer.hidden) openDrawer(next.dataset.id, false).then(() => history.replaceState({}, "", detailUrl(next.dataset.id)));
  }

  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const typing = event.target.closest("input:not([type=checkbox]), textarea, select, [contenteditable]");
    if (event.key === "Escape") {
      if (help.open) return;
      if (!drawer.hidden) {
        event.preventDefault();
        closeDrawer(true);
      }
      return;
    }
    if (typing) return;
    if (event.key === "j" || event.key === "ArrowDown") {
      event.preventDefault();
      move(1);
    } else if (event.key === "k" || event.key === "ArrowUp") {
      event.preventDefault();
      move(-1);
    } else if (event.key === "Enter" && current) {
      event.preventDefault();
      openDrawer(current.dataset.id, true);
    } else if (event.key === "x" && current) {
      const box = current.querySelector("input.select");
      box.checked = !box.checked;
      selectionChanged();
    } else if (event.key === "?") {
      event.preventDefault();
      help.showModal();
    }
  });
})();
