// The flow graph and the small charts, drawn as SVG with plain DOM calls.
(() => {
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";

function svg(tag, attrs, text) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

function fmtRate(r) {
  return r >= 100 ? r.toFixed(0) : r >= 10 ? r.toFixed(1) : r.toFixed(2);
}

// Agents on an outer ring, topics on an inner one; names sorted, so places are stable.
function drawFlow(root, flow) {
  while (root.firstChild) root.removeChild(root.firstChild);
  const defs = svg("defs");
  const marker = svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerUnits: "userSpaceOnUse", markerWidth: 11, markerHeight: 11, orient: "auto-start-reverse" });
  marker.appendChild(svg("path", { d: "M 0 0 L 10 5 L 0 10 z", fill: "#8a94a8" }));
  defs.appendChild(marker);
  root.appendChild(defs);
  const W = 900, H = 560, cx = W / 2, cy = H / 2;
  const agents = flow.nodes.filter((n) => !n.startsWith("topic:"));
  const topics = flow.nodes.filter((n) => n.startsWith("topic:"));
  const pos = {};
  agents.forEach((n, i) => {
    const a = (2 * Math.PI * i) / Math.max(agents.length, 1) - Math.PI / 2;
    pos[n] = [cx + 360 * Math.cos(a), cy + 230 * Math.sin(a)];
  });
  topics.forEach((n, i) => {
    const a = (2 * Math.PI * i) / Math.max(topics.length, 1) - Math.PI / 2 + 0.3;
    pos[n] = [cx + 170 * Math.cos(a), cy + 110 * Math.sin(a)];
  });
  const maxRate = Math.max(1, ...flow.edges.map((e) => e.rate));
  const edges = svg("g");
  for (const e of flow.edges) {
    const a = pos[e.from], b = pos[e.to];
    if (!a || !b || e.from === e.to) continue;
    const dx = b[0] - a[0], dy = b[1] - a[1], len = Math.hypot(dx, dy) || 1;
    const pad = 30;
    const x1 = a[0] + (dx / len) * pad, y1 = a[1] + (dy / len) * pad;
    const x2 = b[0] - (dx / len) * pad, y2 = b[1] - (dy / len) * pad;
    const mx = (x1 + x2) / 2 - (dy / len) * 18, my = (y1 + y2) / 2 + (dx / len) * 18;
    const width = 1 + 7 * Math.log1p(e.rate) / Math.log1p(maxRate);
    const path = svg("path", { d: `M ${x1} ${y1} Q ${mx} ${my} ${x2} ${y2}`, class: "edge " + e.kind, "data-from": e.from, "data-to": e.to, "stroke-width": width.toFixed(2), "marker-end": "url(#arrow)" });
    path.appendChild(svg("title", {}, `${e.from} → ${e.to}: ${fmtRate(e.rate)}/s`));
    edges.appendChild(path);
    edges.appendChild(svg("text", { x: mx, y: my, class: "rate", "text-anchor": "middle" }, fmtRate(e.rate) + "/s"));
  }
  root.appendChild(edges);
  for (const n of agents) {
    const g = svg("g", { class: "agent", "data-node": n });
    g.appendChild(svg("circle", { cx: pos[n][0], cy: pos[n][1], r: 26 }));
    g.appendChild(svg("text", { x: pos[n][0], y: pos[n][1] + 4, "text-anchor": "middle" }, n));
    root.appendChild(g);
  }
  for (const n of topics) {
    const label = n.slice(6);
    const w = Math.max(60, label.length * 7 + 14);
    const g = svg("g", { class: "topic", "data-node": n });
    g.appendChild(svg("rect", { x: pos[n][0] - w / 2, y: pos[n][1] - 12, width: w, height: 24, rx: 4 }));
    g.appendChild(svg("text", { x: pos[n][0], y: pos[n][1] + 4, "text-anchor": "middle" }, label));
    root.appendChild(g);
  }
  if (!flow.nodes.length) root.appendChild(svg("text", { x: cx, y: cy, "text-anchor": "middle" }, "no traffic yet"));
}

// A sparkline of the last values (a minute at one sample a second).
function sparkline(values, w = 160, h = 28) {
  const s = svg("svg", { width: w, height: h, viewBox: `0 0 ${w} ${h}`, class: "spark" });
  if (values.length < 2) return s;
  const max = Math.max(...values, 1e-9);
  const step = w / (values.length - 1);
  const pts = values.map((v, i) => `${(i * step).toFixed(1)},${(h - 2 - (v / max) * (h - 4)).toFixed(1)}`);
  s.appendChild(svg("polyline", { points: pts.join(" "), fill: "none", stroke: "#2f6fde", "stroke-width": 1.5 }));
  s.appendChild(svg("title", {}, `max ${fmtRate(max)}`));
  return s;
}

window.agentcommFlow = { drawFlow, sparkline, fmtRate };
})();
