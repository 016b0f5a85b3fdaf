// The plane overview page: polls /v1/admin/overview with the operator's bearer token.
"use strict";
const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";
const REFRESH_MS = 3000;
const COLORS = ["#1d4ed8", "#b3261e", "#2e7d32", "#b26a00", "#7c3aed", "#0e7490"];
const MAX_SERIES = COLORS.length;
let token = sessionStorage.getItem("soma-token") || "";
let timer = null;
let inFlight = false;
let last = null;

function say(text, error = false) {
  $("message").textContent = text;
  $("message").className = error ? "error" : "";
}

function cell(tr, text, numeric = false) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined ? "—" : String(text);
  if (numeric) td.className = "num";
  tr.appendChild(td);
  return td;
}

function fill(body, rows, render) {
  const trs = rows.map((row) => { const tr = document.createElement("tr"); render(tr, row); return tr; });
  if (!trs.length) {
    const tr = document.createElement("tr");
    const td = cell(tr, "nothing to show");
    td.colSpan = 8;
    td.className = "muted";
    trs.push(tr);
  }
  $(body).replaceChildren(...trs);
}

const seconds = (s) => (s === null || s === undefined ? null : s.toFixed(1));

function drawChart(history) {
  const chart = $("lag-chart");
  const metric = $("metric").value;
  const width = 1000, height = 220, pad = 28;
  // The series that lag most at their last point; flat-zero series are left out.
  const series = history
    .map((s) => ({ name: `${s.group} / ${s.topic}`, points: s.points, now: s.points.at(-1)?.[metric] || 0 }))
    .filter((s) => s.points.some((p) => (p[metric] || 0) > 0))
    .sort((a, b) => b.now - a.now)
    .slice(0, MAX_SERIES);
  const nodes = [];
  const times = series.flatMap((s) => s.points.map((p) => p.at_ms));
  const max = Math.max(1, ...series.flatMap((s) => s.points.map((p) => p[metric] || 0)));
  const t0 = Math.min(...times), t1 = Math.max(...times);
  const x = (t) => pad + (t1 > t0 ? ((t - t0) / (t1 - t0)) * (width - 2 * pad) : (width - 2 * pad));
  const y = (v) => height - pad - (v / max) * (height - 2 * pad);
  const axis = document.createElementNS(SVG, "path");
  axis.setAttribute("d", `M${pad} ${pad} V${height - pad} H${width - pad}`);
  axis.setAttribute("stroke", "#9aa3b2");
  axis.setAttribute("fill", "none");
  nodes.push(axis);
  const label = (text, lx, ly, anchor = "start") => {
    const t = document.createElementNS(SVG, "text");
    t.setAttribute("x", lx); t.setAttribute("y", ly);
    t.setAttribute("font-size", "11"); t.setAttribute("fill", "#555");
    t.setAttribute("text-anchor", anchor);
    t.textContent = text;
    nodes.push(t);
  };
  label(metric === "lag" ? `${max} records` : `${max.toFixed(1)} s`, pad + 4, pad - 8);
  if (times.length) {
    label(`${Math.round((t1 - t0) / 1000)} s of history`, width - pad, height - 8, "end");
  } else {
    label("no lag to draw yet", width / 2, height / 2, "middle");
  }
  const legend = [];
  series.forEach((s, i) => {
    const line = document.createElementNS(SVG, "polyline");
    line.setAttribute("points", s.points.map((p) => `${x(p.at_ms).toFixed(1)},${y(p[metric] || 0).toFixed(1)}`).join(" "));
    line.setAttribute("fill", "none");
    line.setAttribute("stroke", COLORS[i]);
    line.setAttribute("stroke-width", "2");
    line.setAttribute("vector-effect", "non-scaling-stroke");
    line.dataset.series = s.name;
    line.dataset.points = String(s.points.length);
    nodes.push(line);
    const item = document.createElement("span");
    const swatch = document.createElement("i");
    swatch.style.background = COLORS[i];
    item.append(swatch, `${s.name}: ${metric === "lag" ? s.now : seconds(s.now)}`);
    legend.push(item);
  });
  chart.replaceChildren(...nodes);
  $("legend").replaceChildren(...legend);
}

function render(data) {
  last = data;
  const lag = data.lag;
  $("lag-error").textContent = lag.error ? `Broker not readable: ${lag.error} (values from the last read)` : "";
  drawChart(lag.history);
  const only = $("only-lagging").checked;
  const partitions = lag.partitions.filter((p) => !only || p.lag > 0)
    .sort((a, b) => a.group.localeCompare(b.group) || a.topic.localeCompare(b.topic) || a.partition - b.partition);
  fill("lag-body", partitions, (tr, p) => {
    tr.dataset.key = `${p.group}|${p.topic}|${p.partition}`;
    if (p.lag > 0) tr.className = "lagging";
    cell(tr, p.group); cell(tr, p.topic); cell(tr, p.partition, true);
    cell(tr, p.committed, true); cell(tr, p.end, true);
    cell(tr, p.lag, true).className = "num lag";
    cell(tr, seconds(p.lag_seconds), true).className = "num lag-seconds";
  });
  fill("tenant-body", lag.tenants, (tr, t) => {
    cell(tr, t.group); cell(tr, t.topic); cell(tr, t.tenant);
    cell(tr, t.lag, true); cell(tr, seconds(t.lag_seconds), true); cell(tr, t.exact ? "yes" : "estimate");
  });
  fill("dlq-body", data.dead_letters, (tr, d) => { cell(tr, d.topic); cell(tr, d.depth, true); });
  const outbox = data.outbox;
  $("outbox-modes").textContent = outbox.modes.length ? outbox.modes.join(", ") : "—";
  $("outbox-error").textContent = outbox.error || "";
  fill("outbox-body", outbox.tenants, (tr, o) => {
    cell(tr, o.tenant); cell(tr, o.pending, true); cell(tr, o.oldest_pending_age_s, true);
  });
  const backend = data.memory_backend;
  $("breaker").textContent = backend ? backend.breaker : "unknown";
  $("breaker").className = backend ? "state-" + backend.breaker : "error";
  $("backend-mode").textContent = backend ? `${backend.mode} (${backend.backend})` : "no answer";
  $("backend-mode").className = backend ? "state-" + backend.mode : "error";
  $("backend-detail").textContent = backend ? backend.detail : "";
  $("updated").textContent = new Date(lag.taken_at_ms || Date.now()).toLocaleTimeString();
}

async function load() {
  if (!token) { say("Paste an admin token first.", true); return; }
  if (inFlight) return;  // a slow answer is not asked for twice
  inFlight = true;
  try {
    const response = await fetch("/v1/admin/overview", { headers: { Authorization: "Bearer " + token } });
    const data = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(data.message || response.statusText);
    render(data);
    // Each finished load is counted, so a reader (or a test) can tell a fresh view from a stale one.
    $("lag-body").dataset.loads = String(Number($("lag-body").dataset.loads || 0) + 1);
    say("");
  } catch (error) {
    say(error.message, true);
  } finally {
    inFlight = false;
  }
}

function start() {
  if (timer) clearInterval(timer);
  load();
  timer = setInterval(load, REFRESH_MS);
}

$("interval").textContent = String(REFRESH_MS / 1000);
$("use-token").addEventListener("click", () => {
  token = $("token").value.trim();
  sessionStorage.setItem("soma-token", token);
  start();
});
$("metric").addEventListener("change", () => { if (last) render(last); });
$("only-lagging").addEventListener("change", () => { if (last) render(last); });
if (token) start();
