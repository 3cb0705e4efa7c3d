// jobpulse dashboard: cards from the live stream (/api/stats/stream), charts
// from /api/stats/trends, queue table and error patterns from
// /api/stats/detailed. No build step; uPlot is vendored in /static/vendor.
"use strict";

const state = { rangeS: 86400, granularity: "auto", sortKey: "pending", sortAsc: false, queues: [], charts: {} };
const jobpulse = (window.jobpulse = { lastOverview: null, trendRequests: [] });

const $ = (sel) => document.querySelector(sel);
const num = (v) => (v === null || v === undefined ? "–" : Math.round(v).toLocaleString("en-US"));
const pct = (v) => (v === null || v === undefined ? "–" : (v * 100).toFixed(v < 0.1 ? 2 : 1) + " %");
const ms = (v) => (v === null || v === undefined ? "–" : v < 1000 ? v.toFixed(v < 10 ? 1 : 0) + " ms" : (v / 1000).toFixed(2) + " s");
const span = (s) => (s < 120 ? Math.round(s) + " s" : Math.round(s / 60) + " min");
const age = (s) => (s === null || s === undefined ? "–" : s < 120 ? s + " s" : s < 7200 ? Math.round(s / 60) + " min" : Math.round(s / 3600) + " h");

async function getData(url) {
  const resp = await fetch(url, { headers: { Accept: "application/json" } });
  const body = await resp.json();
  if (!body.success) throw new Error(body.error || "HTTP " + resp.status);
  return body.data;
}

function setCard(id, value, text, sub) {
  const card = document.getElementById(id);
  card.dataset.value = value === null || value === undefined ? "" : String(value);
  card.querySelector(".value").textContent = text;
  if (sub !== undefined) card.querySelector(".sub").textContent = sub;
}

function renderOverview(ov) {
  jobpulse.lastOverview = ov;
  setCard("card-pending", ov.pending_jobs, num(ov.pending_jobs), "oldest " + age(ov.oldest_pending_age_seconds));
  setCard("card-running", ov.running_jobs, num(ov.running_jobs));
  // the window is shorter than 5 min on a young system (it never reaches back before the first data)
  const over = "over the last " + span(ov.window_seconds);
  setCard("card-throughput", ov.overall_throughput, ov.overall_throughput.toFixed(1), "outcomes / min " + over);
  setCard("card-error-rate", ov.overall_error_rate, pct(ov.overall_error_rate), over);
  const p = ov.processing_time_ms;
  setCard("card-p95", p.p95, ms(p.p95), "p50 " + ms(p.p50) + " · p99 " + ms(p.p99));
  setCard("card-workers", ov.active_workers ?? null, num(ov.active_workers), "aggregator lag " + ov.aggregator_lag_seconds.toFixed(1) + " s");
  setCard("card-total", ov.total_jobs, num(ov.total_jobs), num(ov.completed_jobs) + " completed · " + num(ov.failed_jobs) + " failed");
  const status = $("#status");
  status.dataset.status = ov.system_health.status;
  status.textContent = ov.system_health.status;
  $("#updated").textContent = new Date(ov.last_updated).toLocaleTimeString();
  renderAlerts(ov.system_health.alerts);
}

function renderAlerts(alerts) {
  const box = $("#alerts");
  box.replaceChildren(...alerts.map((a) => {
    const div = document.createElement("div");
    div.className = "alert " + a.severity;
    div.textContent = a.severity + ": " + a.message;
    return div;
  }));
}

function connectLive() {
  const live = $("#live");
  const source = new EventSource("/api/stats/stream");
  source.addEventListener("overview", (e) => { live.classList.add("on"); live.textContent = "● live"; renderOverview(JSON.parse(e.data)); });
  source.addEventListener("alerts", (e) => renderAlerts(JSON.parse(e.data)));
  source.addEventListener("error", () => { live.classList.remove("on"); live.textContent = "○ reconnecting"; });
}

function trendGranularity() {
  if (state.granularity !== "auto") return state.granularity;
  return state.rangeS <= 6 * 3600 ? "minute" : "hour";
}

function chart(id, series, axes) {
  const el = document.getElementById(id);
  const opts = {
    width: Math.max(300, el.clientWidth), height: 220, series: [{}, ...series], axes,
    scales: { x: { time: true } }, legend: { live: true },
  };
  const plot = new uPlot(opts, [[], ...series.map(() => [])], el);
  new ResizeObserver(() => plot.setSize({ width: Math.max(300, el.clientWidth), height: 220 })).observe(el);
  return plot;
}

function makeCharts() {
  const grid = { stroke: "#263040" }, ticks = { stroke: "#263040" }, stroke = "#8a96a3";
  state.charts.throughput = chart("chart-throughput", [
    { label: "throughput / min", stroke: "#58a6ff", width: 2 },
    { label: "error rate %", stroke: "#f85149", width: 1.5, scale: "%" },
  ], [{ stroke, grid, ticks }, { stroke, grid, ticks }, { side: 1, scale: "%", stroke, grid: { show: false }, ticks }]);
  state.charts.latency = chart("chart-latency", [
    { label: "p50", stroke: "#3fb950", width: 1.5, points: { show: true, size: 4 } },
    { label: "p95", stroke: "#d29922", width: 1.5, points: { show: true, size: 4 } },
    { label: "p99", stroke: "#f85149", width: 1.5, points: { show: true, size: 4 } },
  ], [{ stroke, grid, ticks }, { stroke, grid, ticks }]);
}

async function refreshTrends() {
  const end = Date.now();
  const url = "/api/stats/trends?start=" + new Date(end - state.rangeS * 1000).toISOString() +
    "&end=" + new Date(end).toISOString() + "&granularity=" + trendGranularity();
  jobpulse.trendRequests.push(url);
  try {
    const points = await getData(url);
    const xs = points.map((p) => Date.parse(p.hour) / 1000);
    state.charts.throughput.setData([xs, points.map((p) => p.throughput), points.map((p) => p.error_rate * 100)]);
    state.charts.latency.setData([xs, ...["p50", "p95", "p99"].map((k) => points.map((p) => p.processing_time_ms[k]))]);
  } catch (err) {
    $("#chart-throughput").dataset.error = String(err);
    console.warn("trends:", err.message);
  }
}

// No range: the queue table's rates use the same window as the throughput card (the overview's
// rate window, from the first data on, the current minute counted for its elapsed part) and as
// `jobpulse top`, so the three agree; the error patterns are those of the default range (24 h).
async function refreshDetailed() {
  const d = await getData("/api/stats/detailed");
  state.queues = d.queue_stats.map((q) => ({ ...q, p95: q.processing_time_ms.p95 }));
  renderQueues();
  renderErrors(d.error_patterns);
}

function renderQueues() {
  const { sortKey, sortAsc } = state;
  const rows = [...state.queues].sort((a, b) => {
    const x = a[sortKey] ?? -1, y = b[sortKey] ?? -1;
    return (x < y ? -1 : x > y ? 1 : 0) * (sortAsc ? 1 : -1);
  });
  const top = Math.max(1e-9, ...rows.map((q) => q.throughput_per_minute));
  $("#queues tbody").replaceChildren(...rows.map((q) => {
    const tr = document.createElement("tr");
    const bar = `<span class="bar" style="width:${Math.round((60 * q.throughput_per_minute) / top)}px"></span>`;
    const cells = [q.name, num(q.pending), num(q.running), bar + q.throughput_per_minute.toFixed(1), pct(q.error_rate),
      ms(q.p95), age(q.oldest_pending_age_seconds), num(q.completed_total), num(q.failed_total)];
    tr.innerHTML = cells.map((c, i) => "<td>" + (i === 0 ? escapeHtml(c) : c) + "</td>").join("");
    return tr;
  }));
  document.querySelectorAll("#queues th").forEach((th) => {
    th.classList.toggle("sorted", th.dataset.key === sortKey);
    th.classList.toggle("asc", th.dataset.key === sortKey && sortAsc);
  });
}

function renderErrors(patterns) {
  $("#errors").replaceChildren(...patterns.slice(0, 20).map((p) => {
    const li = document.createElement("li");
    li.innerHTML = `<b>${num(p.count)}</b> × ${escapeHtml(p.error_type)} (${p.percentage.toFixed(1)} %) in ` +
      `${p.affected_queues.map(escapeHtml).join(", ")} — <code>${escapeHtml(p.sample_message)}</code>`;
    return li;
  }));
}

function escapeHtml(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

function wireControls() {
  document.querySelectorAll("#ranges button").forEach((b) => b.addEventListener("click", () => {
    document.querySelectorAll("#ranges button").forEach((o) => o.classList.toggle("on", o === b));
    state.rangeS = Number(b.dataset.range);
    refreshTrends();
  }));
  $("#granularity").addEventListener("change", (e) => { state.granularity = e.target.value; refreshTrends(); });
  document.querySelectorAll("#queues th").forEach((th) => th.addEventListener("click", () => {
    state.sortAsc = state.sortKey === th.dataset.key ? !state.sortAsc : th.dataset.key === "name";
    state.sortKey = th.dataset.key;
    renderQueues();
  }));
}

function main() {
  makeCharts();
  wireControls();
  connectLive();
  const slow = () => { refreshTrends(); refreshDetailed().catch((err) => console.warn("detailed:", err.message)); };
  slow();
  setInterval(slow, 10000);
}

main();
