// The agentcomm dashboard: one EventSource, one render per view, no framework.
"use strict";

const { drawFlow, sparkline, fmtRate } = window.agentcommFlow;
const TOKEN = document.querySelector('meta[name="token"]').content;
const TAIL_MAX = 500; // rows kept in the tail
const PAUSED_MAX = 1000; // records held while paused; older ones are counted

const S = {
  view: "agents", stats: null, hello: null, tail: [], paused: false, held: [], heldDropped: 0,
  drops: 0, dlqCount: -1, dlq: [], dlqSel: null, traceSel: null, tasks: [], boardKey: null,
  boardPrefix: "", boardRows: [], topicHist: {}, lagHist: {},
};

function withToken(path) {
  return path + (path.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(TOKEN);
}

async function api(path, method = "GET") {
  const r = await fetch(withToken(path), { method, headers: { "X-Dashboard-Token": TOKEN } });
  const body = await r.json();
  if (!r.ok) throw new Error(body.error || `HTTP ${r.status}`);
  return body;
}

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "onclick") el.addEventListener("click", v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, String(v));
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    el.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const $ = (sel) => document.querySelector(sel);
const num = (v) => h("td", { class: "num" }, v);
const clock = (t) => new Date(t * 1000).toISOString().slice(11, 23);
const ago = (t) => { const d = Math.max(Date.now() / 1000 - t, 0); return d < 120 ? `${d.toFixed(0)}s` : `${(d / 60).toFixed(0)}m`; };
const short = (v, n = 80) => { const s = typeof v === "string" ? v : JSON.stringify(v); return s.length > n ? s.slice(0, n - 1) + "…" : s; };

// Only the newest of overlapping loads of one view renders (answers may come back out of order).
const loads = {};
function latest(name) {
  const n = (loads[name] = (loads[name] || 0) + 1);
  return () => loads[name] === n;
}

function fill(tbody, rows) {
  const tb = typeof tbody === "string" ? $(tbody) : tbody;
  tb.replaceChildren(...rows);
}

// A load that failed (the server stopped, a refused action) is said in the header, not thrown.
window.addEventListener("unhandledrejection", (e) => {
  e.preventDefault();
  $("#status").textContent = "error: " + (e.reason && e.reason.message ? e.reason.message : e.reason);
  $("#status").classList.remove("live");
});

// -- tabs -------------------------------------------------------------------------
for (const b of document.querySelectorAll("#tabs button")) {
  b.addEventListener("click", () => show(b.dataset.view));
}

function show(view) {
  S.view = view;
  for (const b of document.querySelectorAll("#tabs button")) b.classList.toggle("active", b.dataset.view === view);
  for (const v of document.querySelectorAll(".view")) v.classList.toggle("active", v.id === "view-" + view);
  if (view === "dlq") loadDlq();
  if (view === "board") loadBoard();
  if (view === "traces") loadTraces();
  render();
}

function render() {
  const r = { agents: renderAgents, flow: renderFlow, tail: renderTail, topics: renderTopics, tasks: renderTasks }[S.view];
  if (r) r();
}

// -- the event stream -------------------------------------------------------------
const es = new EventSource(withToken("events"));
es.addEventListener("open", () => { $("#status").textContent = "live"; $("#status").classList.add("live"); });
es.addEventListener("error", () => { $("#status").textContent = "reconnecting"; $("#status").classList.remove("live"); });
es.addEventListener("hello", (e) => {
  S.hello = JSON.parse(e.data);
  for (const b of document.querySelectorAll("button.action")) b.disabled = !S.hello.allow_actions;
});
es.addEventListener("stats", (e) => {
  S.stats = JSON.parse(e.data);
  const s = S.stats;
  $("#where").textContent = `${s.transport} · ${s.agents.length} agent${s.agents.length === 1 ? "" : "s"}` + (S.hello && !S.hello.allow_actions ? " · read-only" : "");
  const d = s.dashboard;
  $("#counters").textContent = `seen ${d.seen} · sampled out ${d.sampled_out} · dropped for this tab ${S.drops}` + (d.last_error ? ` · last error: ${d.last_error}` : "");
  for (const t of s.topics) push(S.topicHist, t.topic, t.publish_rate);
  for (const sub of s.subscriptions) push(S.lagHist, sub.name, sub.lag);
  $("#dlq-count").textContent = s.dead_letters ? String(s.dead_letters) : "";
  if (s.dead_letters !== S.dlqCount) { S.dlqCount = s.dead_letters; if (S.view === "dlq") loadDlq(); }
  if (S.view === "traces") loadTraces();
  render();
});
es.addEventListener("msgs", (e) => {
  const { records } = JSON.parse(e.data);
  if (S.paused) {
    S.held.push(...records);
    if (S.held.length > PAUSED_MAX) { S.heldDropped += S.held.length - PAUSED_MAX; S.held.splice(0, S.held.length - PAUSED_MAX); }
  } else addTail(records);
  if (S.view === "tail") renderTail();
});
es.addEventListener("drops", (e) => { S.drops = JSON.parse(e.data).dropped; });
es.addEventListener("tasks", (e) => { S.tasks = JSON.parse(e.data); if (S.view === "tasks") renderTasks(); });
es.addEventListener("board", (e) => boardChange(JSON.parse(e.data)));

function push(hist, key, v) {
  const a = hist[key] || (hist[key] = []);
  a.push(v);
  if (a.length > 60) a.shift();
}

// -- agents -----------------------------------------------------------------------
function renderAgents() {
  const s = S.stats;
  if (!s) return;
  $("#agents-empty").style.display = s.agents.length ? "none" : "";
  fill("#agents-table tbody", s.agents.map((a) => h("tr", { "data-agent": a.agent },
    h("td", {}, h("b", {}, a.agent)), h("td", { class: "muted" }, a.where),
    h("td", {}, a.handlers.join(", ") || "–"), h("td", {}, (a.subscriptions || []).join(", ") || "–"),
    num(`${a.queued}/${a.mailbox_size}`), num(a.in_flight), num(a.received), num(a.handled), num(a.failed),
    num(fmtRate(a.handled_rate || 0)), num(fmtRate(a.received_rate || 0)), num(fmtRate(a.sent_rate || 0)))));
  const f = Object.entries(s.failures || {});
  $("#failures").replaceChildren(...(f.length ? [h("h2", {}, "Failures"), h("table", {}, h("tbody", {}, ...f.map(([k, r]) =>
    h("tr", {}, h("td", {}, k), num(r.count), h("td", {}, r.last_error || ""), h("td", { class: "muted" }, r.last_subject || "")))))] : []));
}

// -- flow -------------------------------------------------------------------------
function renderFlow() { if (S.stats) drawFlow($("#flow-svg"), S.stats.flow); }

// -- tail -------------------------------------------------------------------------
function addTail(records) {
  S.tail.push(...records);
  if (S.tail.length > TAIL_MAX) S.tail.splice(0, S.tail.length - TAIL_MAX);
}

function tailFilter() {
  const f = new FormData($("#tail-filters"));
  const agent = f.get("agent").trim(), kind = f.get("kind"), topic = f.get("topic").trim(), trace = f.get("trace").trim();
  return (r) => (!agent || r.sender === agent || r.recipient === agent)
    && (!kind || r.kind === kind)
    && (!topic || (r.topic || "").startsWith(topic.replace(/[.]?[*>]$/, "")))
    && (!trace || r.trace.includes(trace) || (r.otel_trace || "").includes(trace));
}

function renderTail() {
  const keep = tailFilter();
  const rows = S.tail.filter(keep).slice(-200).reverse();
  fill("#tail-table tbody", rows.map((r) => h("tr", { class: "clickable" + (r.error ? " error" : ""), "data-id": r.id, onclick: () => openTrace(r.trace) },
    h("td", { class: "mono" }, clock(r.time)), h("td", {}, r.kind), h("td", {}, r.sender),
    h("td", {}, r.to + (r.handler ? "." + r.handler : "")), num(r.size + " B"),
    h("td", { class: "mono", title: r.otel_trace || r.trace }, r.trace), h("td", { class: "mono" }, r.error || r.preview))));
  $("#tail-info").textContent = S.paused ? `paused: ${S.held.length} waiting` + (S.heldDropped ? `, ${S.heldDropped} dropped` : "") : `${rows.length} shown`;
}

$("#tail-filters").addEventListener("input", renderTail);
$("#tail-filters").addEventListener("submit", (e) => e.preventDefault());
$("#tail-pause").addEventListener("click", () => {
  S.paused = !S.paused;
  $("#tail-pause").textContent = S.paused ? "Resume" : "Pause";
  if (!S.paused) { addTail(S.held); S.held = []; S.heldDropped = 0; }
  renderTail();
});

// -- traces -----------------------------------------------------------------------
async function loadTraces() {
  const current = latest("traces");
  const list = await api("api/traces");
  if (!current()) return;
  fill("#traces-table tbody", list.map((t) => h("tr", { class: "clickable" + (t.trace === S.traceSel ? " selected" : "") + (t.errors ? " error" : ""), "data-trace": t.trace, onclick: () => openTrace(t.trace) },
    h("td", {}, t.root), num(t.spans), num((t.duration * 1000).toFixed(2)), num(t.errors))));
  if (!S.traceSel) return;
  const tree = await api("api/trace/" + encodeURIComponent(S.traceSel));
  if (current()) drawTrace(tree);
}

function openTrace(id) { S.traceSel = id; show("traces"); }

function drawTrace(tree) {
  const total = Math.max(tree.duration, 1e-6);
  const rows = tree.spans.map((s) => {
    const left = (s.offset / total) * 100, width = Math.max((s.duration / total) * 100, 0.3);
    const point = s.kind !== "request" && s.kind !== "stream";
    const bar = h("div", { class: "wf-bar" + (s.error ? " error" : "") + (point ? " point" : ""), style: `left:${left.toFixed(2)}%;` + (point ? "" : `width:${width.toFixed(2)}%`), title: s.error || s.response || s.preview });
    const label = `${"\u00a0\u00a0".repeat(s.depth)}${s.label}` + (s.attempt > 1 ? ` (attempt ${s.attempt})` : "") + (s.pending ? " (no answer yet)" : "");
    return h("div", { class: "wf-row span-" + s.kind, "data-span": s.id },
      h("div", { class: "wf-label", title: s.label }, label),
      h("div", { class: "wf-track" }, bar),
      h("div", { class: "wf-time" }, point ? s.kind : (s.duration * 1000).toFixed(2) + " ms"));
  });
  const errs = tree.spans.filter((s) => s.error);
  $("#waterfall").replaceChildren(
    h("p", {}, h("b", {}, `trace ${tree.trace}`), ` · ${tree.spans.length} spans · ${(tree.duration * 1000).toFixed(2)} ms`),
    ...rows, ...errs.map((s) => h("p", { class: "muted" }, `${s.label}: ${s.error}`)));
  $("#waterfall").classList.remove("muted");
}

// -- topics -----------------------------------------------------------------------
function renderTopics() {
  const s = S.stats;
  if (!s) return;
  fill("#topics-table tbody", s.topics.map((t) => h("tr", { "data-topic": t.topic }, h("td", {}, t.topic), num(t.published), num(fmtRate(t.publish_rate)),
    num(t.delivered), num(fmtRate(t.deliver_rate)), num(t.retried), num(t.dead_lettered), h("td", {}, sparkline(S.topicHist[t.topic] || [])))));
  fill("#subs-table tbody", s.subscriptions.map((x) => h("tr", { "data-subscription": x.name }, h("td", {}, x.name), h("td", {}, x.agent), h("td", {}, x.pattern),
    num(x.lag), num(x.in_flight), num(fmtRate(x.deliver_rate)), num(fmtRate(x.ack_rate)), num(x.retried), num(x.dead_lettered), h("td", {}, sparkline(S.lagHist[x.name] || [])))));
  $("#streams").textContent = `events stored: ${s.events_stored} · dead letters: ${s.dead_letters}`;
}

// -- dead letters -----------------------------------------------------------------
async function loadDlq() {
  const current = latest("dlq");
  const dlq = await api("api/dead-letters");
  if (!current()) return;
  S.dlq = dlq;
  $("#dlq-empty").style.display = S.dlq.length ? "none" : "";
  fill("#dlq-table tbody", S.dlq.map((d) => h("tr", { class: "clickable" + (d.sequence === S.dlqSel ? " selected" : ""), "data-seq": d.sequence, onclick: () => { S.dlqSel = d.sequence; loadDlq(); } },
    num(d.sequence), h("td", {}, d.subscription), h("td", {}, d.topic), h("td", {}, d.reason), num(d.attempts), h("td", { title: d.last_error || "" }, short(d.last_error || "", 48)))));
  const sel = S.dlq.find((d) => d.sequence === S.dlqSel);
  if (!sel) { $("#dlq-detail").replaceChildren(h("p", { class: "muted" }, "Pick a dead letter to see its event.")); return; }
  const allow = S.hello && S.hello.allow_actions;
  const act = (what, cls) => h("button", { class: "action " + cls, "data-action": what, title: allow ? `${what} as ${S.hello.operator}` : "read-only: start the dashboard with --allow-actions", onclick: () => dlqAction(sel.sequence, what) }, what[0].toUpperCase() + what.slice(1));
  const buttons = [act("redrive", ""), " ", act("discard", "danger")];
  if (!allow) for (const b of buttons) if (b instanceof Node) b.disabled = true;
  $("#dlq-detail").replaceChildren(
    h("h2", {}, `Dead letter #${sel.sequence}`),
    h("p", {}, `${sel.reason} after ${sel.attempts} attempt(s) in ${sel.subscription} (agent ${sel.agent}), ${ago(sel.failed_at)} ago`),
    sel.last_error ? h("p", { class: "mono" }, sel.last_error) : null,
    h("pre", { id: "dlq-event" }, JSON.stringify(sel.event, null, 2)),
    h("div", {}, ...buttons), h("p", { id: "dlq-result", class: "muted" }));
}

async function dlqAction(seq, what) {
  try {
    const r = await api(`api/dead-letters/${seq}/${what}`, "POST");
    S.dlqSel = null;
    await loadDlq();
    $("#dlq-detail").replaceChildren(h("p", { id: "dlq-result" }, `${what}: ${JSON.stringify(r)}`));
  } catch (err) {
    $("#dlq-result").textContent = `${what} refused: ${err.message}`;
  }
}

// -- blackboard -------------------------------------------------------------------
$("#board-form").addEventListener("submit", (e) => { e.preventDefault(); S.boardPrefix = new FormData(e.target).get("prefix"); loadBoard(); });

async function loadBoard() {
  const current = latest("board");
  const rows = await api("api/board?prefix=" + encodeURIComponent(S.boardPrefix));
  if (!current()) return;
  S.boardRows = rows;
  fill("#board-table tbody", S.boardRows.map((e) => h("tr", { class: "clickable" + (e.key === S.boardKey ? " selected" : ""), "data-key": e.key, onclick: () => { S.boardKey = e.key; loadBoard(); } },
    h("td", { class: "mono" }, e.key), h("td", { class: "mono" }, short(e.value)), num(e.revision), h("td", {}, e.author))));
  $("#board-info").textContent = `${S.boardRows.length} key(s)`;
  if (S.boardKey) await loadHistory(S.boardKey);
}

function lines(v) { return v === undefined ? [] : JSON.stringify(v, null, 2).split("\n"); }

// A line diff of two JSON values (longest common subsequence; values are small).
function diff(before, after) {
  const a = lines(before).slice(0, 400), b = lines(after).slice(0, 400);
  const L = Array.from({ length: a.length + 1 }, () => new Array(b.length + 1).fill(0));
  for (let i = a.length - 1; i >= 0; i--)
    for (let j = b.length - 1; j >= 0; j--)
      L[i][j] = a[i] === b[j] ? L[i + 1][j + 1] + 1 : Math.max(L[i + 1][j], L[i][j + 1]);
  const out = [];
  let i = 0, j = 0;
  while (i < a.length || j < b.length) {
    if (i < a.length && j < b.length && a[i] === b[j]) { out.push(h("div", {}, "  " + a[i])); i++; j++; }
    else if (j < b.length && (i >= a.length || L[i][j + 1] >= L[i + 1][j])) { out.push(h("div", { class: "add" }, "+ " + b[j])); j++; }
    else { out.push(h("div", { class: "del" }, "- " + a[i])); i++; }
  }
  return h("pre", { class: "diff" }, ...out);
}

async function loadHistory(key) {
  const current = latest("history");
  const changes = await api("api/board/history?key=" + encodeURIComponent(key));
  if (!current()) return;
  const items = [];
  let prev;
  for (const c of changes) {
    const value = c.entry ? c.entry.value : undefined;
    items.push(h("div", { class: "revision", "data-revision": c.revision },
      h("b", {}, `rev ${c.revision} · ${c.operation}`), ` · ${clock(c.timestamp)}` + (c.entry ? ` · by ${c.entry.author}` : ""), diff(prev, value)));
    prev = value;
  }
  const allow = S.hello && S.hello.allow_actions;
  const del = h("button", { class: "action danger", "data-action": "delete", onclick: async () => { await api("api/board/delete?key=" + encodeURIComponent(key), "POST"); } }, "Delete key");
  del.disabled = !allow;
  $("#board-detail").replaceChildren(h("h2", {}, `History of ${key}`), ...items.reverse(), del);
}

function boardChange(c) {
  const li = h("li", { class: "mono" }, `${clock(c.timestamp)} ${c.key} ${c.operation} rev ${c.revision}` + (c.entry ? ` ${short(c.entry.value, 60)}` : ""));
  const list = $("#board-changes");
  list.insertBefore(li, list.firstChild);
  while (list.children.length > 100) list.removeChild(list.lastChild);
  if (S.view === "board" && c.key.startsWith(S.boardPrefix)) loadBoard();
}

// -- tasks ------------------------------------------------------------------------
function renderTasks() {
  $("#tasks-empty").style.display = S.tasks.length ? "none" : "";
  fill("#tasks-table tbody", S.tasks.map((t) => {
    const p = t.progress;
    const pct = p && p.total ? Math.min(100, (100 * p.done) / p.total) : t.state === "completed" ? 100 : 0;
    return h("tr", { "data-task": t.id }, h("td", { class: "mono" }, t.id.slice(0, 12)), h("td", {}, `${t.agent}.${t.handler}`),
      h("td", { class: "state-" + t.state }, t.state), num(t.attempt),
      h("td", {}, h("span", { class: "bar", title: `${pct.toFixed(0)}%` }, h("span", { style: `width:${pct.toFixed(1)}%` })), ` ${pct.toFixed(0)}%`),
      h("td", {}, (p && p.message) || (t.error ? t.error.message : "")), h("td", { class: "muted" }, ago(t.updated) + " ago"));
  }));
}

api("api/recent").then((r) => { addTail(r); render(); }).catch(() => {});
api("api/tasks").then((t) => { S.tasks = t; render(); }).catch(() => {});
