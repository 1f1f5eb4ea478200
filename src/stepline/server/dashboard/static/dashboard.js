// Stepline dashboard: live updates (Server-Sent Events), actions without reloads, keyboard
// shortcuts and the theme. Plain script, no dependencies; every page works without it too.
(function () {
  "use strict";
  const $ = (sel, root) => (root || document).querySelector(sel);
  const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));
  const csrf = () => $('meta[name="csrf-token"]').content;
  const page = document.body.dataset.page;

  // -- theme ---------------------------------------------------------------------------------
  const root = document.documentElement;
  function applyTheme() {
    const stored = localStorage.getItem("stepline-theme");
    const dark = stored ? stored === "dark" : matchMedia("(prefers-color-scheme: dark)").matches;
    root.dataset.theme = dark ? "dark" : "light";
  }
  function toggleTheme() {
    localStorage.setItem("stepline-theme", root.dataset.theme === "dark" ? "light" : "dark");
    applyTheme();
  }
  applyTheme();
  matchMedia("(prefers-color-scheme: dark)").addEventListener("change", applyTheme);

  // -- toasts and actions ----------------------------------------------------------------------
  let toastTimer = null;
  function toast(text, error) {
    const el = $("#toast");
    el.textContent = text;
    el.className = "show" + (error ? " error" : "");
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { el.className = ""; }, error ? 6000 : 2500);
  }
  async function post(form) {
    const response = await fetch(form.action, {
      method: "POST", body: new FormData(form), credentials: "same-origin",
      headers: { "Accept": "application/json", "X-CSRF-Token": csrf() },
    });
    let body = {};
    try { body = await response.json(); } catch (e) { body = { error: response.statusText }; }
    if (!response.ok) throw new Error(body.error || response.statusText);
    return body;
  }
  document.addEventListener("submit", async (ev) => {
    const form = ev.target;
    if (form.method !== "post" || form.id === "login-form" || form.action.endsWith("/logout")) return;
    ev.preventDefault();
    if (form.dataset.confirm && !confirm(form.dataset.confirm)) return;
    const button = $("button[type=submit]", form);
    if (button) button.disabled = true;
    try {
      const result = await post(form);
      if (form.id === "send-form") {
        sent.add(result.event_id);
        const n = result.run_ids.length;
        $("#send-result").textContent = `Sent ${result.event_id}: ${n} run${n === 1 ? "" : "s"} started`;
        toast("Event sent");
      } else if (result.action) {
        toast(`${result.action === "cancel" ? "Cancelled" : "Replayed"} ${result.done} of ${result.selected} runs`);
        if (result.action === "replay") setTimeout(() => location.reload(), 800);
      } else if (result.run_id) {
        location.href = "/runs/" + result.run_id;   // a replay: its new run
      } else if (result.cancelled) {
        toast("Run cancelled"); refreshRun();
      } else {
        location.reload();
      }
    } catch (e) {
      toast(e.message, true);
      if (form.id === "send-form") $("#send-result").textContent = e.message;
    } finally {
      if (button) button.disabled = false;
    }
  });
  // a step beyond the first ones of a long run: its details are read when it is opened
  document.addEventListener("toggle", async (ev) => {
    const step = ev.target;
    if (!step.matches || !step.matches("details.tl-step") || !step.open) return;
    const body = $(":scope > .tl-body[data-lazy]", step);
    if (!body || body.dataset.loading) return;
    body.dataset.loading = "1";
    const response = await fetch(body.dataset.lazy, { credentials: "same-origin" });
    if (!response.ok) { body.textContent = "Could not load this step."; return; }
    const holder = document.createElement("div");
    holder.innerHTML = await response.text();
    body.replaceWith(holder.firstElementChild);
  }, true);
  $$("button.example").forEach((b) => b.addEventListener("click", () => {
    $("#event-name").value = b.dataset.name;
    $("#event-data").value = b.dataset.data;
    $("#event-data").focus();
  }));

  // -- live updates ----------------------------------------------------------------------------
  const sent = new Set();   // events sent from this page (the send page lists their runs)
  function runMatches(table, item) {
    const f = table.dataset;
    if (f.live === "sent") return item.events.some((e) => sent.has(e));
    if (f.live !== "on") return false;
    if (f.filterFunction && f.filterFunction !== item.function) return false;
    if (f.filterStatus && f.filterStatus !== item.status) return false;
    if (f.filterWaiting && f.filterWaiting !== item.waiting) return false;
    if (f.filterEvent && !item.events.includes(f.filterEvent)) return false;
    return true;
  }
  function rowFrom(html) {
    const t = document.createElement("tbody");
    t.innerHTML = html.trim();
    return t.firstElementChild;
  }
  function onRuns(items) {
    if (resyncing) resyncAgain = true;
    const table = $("table.runs");
    if (table) {
      const body = $("tbody", table);
      for (const item of items.slice().reverse()) {
        const old = $(`tr[data-run="${CSS.escape(item.id)}"]`, body);
        const fits = runMatches(table, item);
        if (old && (fits || table.dataset.live === "off")) {
          const row = rowFrom(item.html);
          if (old.classList.contains("selected")) row.classList.add("selected");
          old.replaceWith(row);
        } else if (old) {
          old.remove();
        } else if (fits) {
          const row = rowFrom(item.html);
          row.classList.add("fresh");
          body.prepend(row);
          const empty = $("#runs-empty");
          if (empty) empty.remove();
          while (body.children.length > 200) body.lastElementChild.remove();
        }
      }
    }
    const live = $("#run-live");
    if (live && items.some((i) => i.id === live.dataset.run)) refreshRun();
    if (page === "functions") refreshSoon();
  }
  function onEvents(items) {
    if (resyncing) resyncAgain = true;
    const table = $("table.events");
    if (!table) return;
    const body = $("tbody", table);
    for (const item of items) {
      if (table.dataset.filterName && table.dataset.filterName !== item.name) continue;
      const old = $(`tr[data-event="${CSS.escape(item.id)}"]`, body);
      const row = rowFrom(item.html);
      if (old) { old.replaceWith(row); continue; }
      row.classList.add("fresh");
      body.prepend(row);
      const empty = $("#events-empty");
      if (empty) empty.remove();
      while (body.children.length > 200) body.lastElementChild.remove();
    }
  }
  // one read of the timeline at a time; a change announced while one is in flight may not be in
  // what it read, so one more read follows it
  let refreshing = null;
  let refreshAgain = false;
  async function refreshRun() {
    const live = $("#run-live");
    if (!live) return;
    if (refreshing) { refreshAgain = true; return; }
    refreshing = (async () => {
      try {
        const response = await fetch(`/runs/${encodeURIComponent(live.dataset.run)}?fragment=1`, { credentials: "same-origin" });
        if (!response.ok) return;
        const html = await response.text();
        // the steps open now, not when the read began: one opened meanwhile stays open
        const open = new Set($$("details[open]", live).map((d) => d.dataset.step || d.className));
        live.innerHTML = html;
        $$("details", live).forEach((d) => { if (open.has(d.dataset.step || d.className)) d.open = true; });
        localTimes(live);
      } finally {
        refreshing = null;
        if (refreshAgain) { refreshAgain = false; refreshRun(); }
      }
    })();
  }
  let soon = null;
  function refreshSoon() {
    if (soon) return;
    soon = setTimeout(async () => {
      soon = null;
      const response = await fetch(location.href, { credentials: "same-origin" });
      if (!response.ok) return;
      const doc = new DOMParser().parseFromString(await response.text(), "text/html");
      const fresh = $("#functions", doc);
      if (fresh) $("#functions").replaceWith(fresh);
    }, 500);
  }
  // what changed between the page's render and the stream's (re)connection was not pushed to
  // this page: read the page once more and take its rows
  // (rows pushed while that read is in flight may be older in what it read: one more read follows)
  let resyncing = false;
  let resyncAgain = false;
  async function resync() {
    if (page === "run") { refreshRun(); return; }
    if (page === "functions") { refreshSoon(); return; }
    if (resyncing) { resyncAgain = true; return; }
    resyncing = true;
    try { await resyncTable(); } finally {
      resyncing = false;
      if (resyncAgain) { resyncAgain = false; resync(); }
    }
  }
  async function resyncTable() {
    const table = $("table.runs[data-live=on], table.events");
    if (!table) return;
    const response = await fetch(location.href, { credentials: "same-origin" });
    if (!response.ok) return;
    const doc = new DOMParser().parseFromString(await response.text(), "text/html");
    const fresh = $(`#${table.id} tbody`, doc);
    if (!fresh) return;
    const selected = $("tr.selected", table);
    $("tbody", table).replaceWith(fresh);
    if (selected) {
      const again = $(`tr[data-run="${CSS.escape(selected.dataset.run || "")}"]`, table);
      if (again) again.classList.add("selected");
    }
    if (fresh.children.length) $$("#runs-empty, #events-empty").forEach((e) => e.remove());
  }
  function connect() {
    if (!["runs", "run", "events", "functions", "send"].includes(page) || !window.EventSource) return;
    const state = $("#live-state");
    const source = new EventSource("/live");
    source.onopen = () => { state.dataset.state = "on"; resync(); };
    source.onerror = () => { state.dataset.state = "error"; };
    source.addEventListener("runs", (e) => onRuns(JSON.parse(e.data)));
    source.addEventListener("events", (e) => onEvents(JSON.parse(e.data)));
    source.addEventListener("functions", () => { if (page === "functions") refreshSoon(); });
    source.addEventListener("reload", () => { if (page !== "send") location.reload(); });
  }

  // -- times: shown in the browser's time zone, with the UTC time in the tooltip ----------------
  function localTimes(scope) {
    $$("time[datetime]", scope).forEach((t) => {
      const d = new Date(t.getAttribute("datetime"));
      if (isNaN(d)) return;
      t.title = t.getAttribute("datetime");
    });
  }

  // -- keyboard --------------------------------------------------------------------------------
  let prefix = null;
  function rows() { return $$("table.grid:not(.attempts) tbody tr, details.tl-step"); }
  function move(step) {
    const all = rows();
    if (!all.length) return;
    let i = all.findIndex((r) => r.classList.contains("selected"));
    if (i >= 0) all[i].classList.remove("selected");
    i = Math.max(0, Math.min(all.length - 1, i + step));
    all[i].classList.add("selected");
    all[i].scrollIntoView({ block: "nearest" });
    (all[i].querySelector("summary") || all[i]).focus({ preventScroll: true });
  }
  document.addEventListener("keydown", (ev) => {
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const target = ev.target;
    if (target.matches && target.matches("input, textarea, select")) {
      if (ev.key === "Escape") target.blur();
      return;
    }
    const key = ev.key;
    if (prefix === "g") {
      prefix = null;
      const to = { f: "/functions", e: "/events", r: "/runs" }[key];
      if (to) { location.href = to; ev.preventDefault(); }
      return;
    }
    if (key === "g") { prefix = "g"; setTimeout(() => { prefix = null; }, 1200); return; }
    if (key === "?") { $("#help").showModal(); ev.preventDefault(); return; }
    if (key === "d") { toggleTheme(); return; }
    if (key === "s") { location.href = "/send"; return; }
    if (key === "/") { const s = $("#search"); if (s) { s.focus(); s.select(); ev.preventDefault(); } else { location.href = "/runs"; } return; }
    if (key === "j") { move(1); return; }
    if (key === "k") { move(-1); return; }
    if (key === "Enter") {
      const sel = $(".selected");
      if (sel && sel.tagName === "TR") { const a = $("a[href^='/runs/'], a[href^='/events/']", sel); if (a) { location.href = a.href; ev.preventDefault(); } }
      return;
    }
    if (key === "c") { const b = $("#cancel-run"); if (b) b.click(); return; }
    if (key === "r") { const b = $("#replay-run"); if (b) b.click(); return; }
    if (key === "x") { const a = $("#export-run"); if (a) a.click(); return; }
  });
  $("#theme-toggle").addEventListener("click", toggleTheme);
  $("#help-open").addEventListener("click", () => $("#help").showModal());

  localTimes(document);
  connect();
})();
