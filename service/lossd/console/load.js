// Load, from lossd's own /metrics (Prometheus text), read every few seconds: requests/s by loss
// and protocol, latency percentiles by protocol (from the histogram's buckets), queue depth,
// batch sizes, in-flight, and a time series of the last minutes.

import { api, format, h } from "./api.js";
import { drawSeries } from "./plot.js";

const POLL_MS = 2000, KEEP_S = 300;

// "name{a="x",b="y"} 1.5" lines -> [{name, labels, value}]
export function parseMetrics(text) {
  const out = [];
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels = {};
    for (const [, k, v] of (m[2] || "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[k] = v;
    out.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return out;
}

// Percentile q of a histogram's bucket counts (cumulative, by upper bound), interpolated
// within its bucket (``interpolate`` false: the bucket's upper bound, for whole counts).
function percentile(buckets, q, interpolate = true) {
  const total = buckets.length ? buckets[buckets.length - 1][1] : 0;
  if (!total) return NaN;
  const rank = q * total;
  let lowerBound = 0, lowerCount = 0;
  for (const [bound, count] of buckets) {
    if (count >= rank) {
      if (!Number.isFinite(bound)) return lowerBound;
      if (!interpolate) return bound;
      return lowerBound + ((bound - lowerBound) * (rank - lowerCount)) / Math.max(count - lowerCount, 1e-12);
    }
    lowerBound = bound; lowerCount = count;
  }
  return lowerBound;
}

function histogram(samples, name, keep = () => true) {
  const by = new Map();
  for (const s of samples) {
    if (s.name !== `${name}_bucket` || !keep(s.labels)) continue;
    const le = s.labels.le === "+Inf" ? Infinity : Number(s.labels.le);
    by.set(le, (by.get(le) || 0) + s.value);
  }
  return [...by.entries()].sort((a, b) => a[0] - b[0]);
}

const minus = (now, before) => now.map(([le, c], i) => [le, c - (before && before[i] ? before[i][1] : 0)]);
const sum = (samples, name, keep = () => true) => samples.filter((s) => s.name === name && keep(s.labels)).reduce((a, s) => a + s.value, 0);

export async function showLoad(main) {
  document.title = "Load · lossd";
  const tiles = h("div", { class: "tiles", id: "load-tiles" });
  const table = h("tbody", { id: "load-rates" });
  const latency = h("tbody", { id: "load-latency" });
  const rateFigure = h("figure", { class: "plot-figure", id: "load-rate" });
  const queueFigure = h("figure", { class: "plot-figure", id: "load-queue" });
  main.replaceChildren(h("article", { class: "card" }, h("h1", {}, "Load"),
    h("p", {}, "Read from this server's ", h("a", { href: "/metrics" }, "/metrics"),
      ` every ${POLL_MS / 1000} s; rates and percentiles over the last interval.`),
    tiles,
    h("div", { class: "pair" }, rateFigure, queueFigure),
    h("h2", {}, "Requests by loss and protocol"),
    h("div", { class: "scroll" }, h("table", {}, h("thead", {}, h("tr", {},
      ["loss", "protocol", "requests/s", "errors/s", "total", "mean batch"].map((c) => h("th", { scope: "col" }, c)))), table)),
    h("h2", {}, "Latency by protocol"),
    h("div", { class: "scroll" }, h("table", {}, h("thead", {}, h("tr", {},
      ["protocol", "p50", "p90", "p99", "requests"].map((c) => h("th", { scope: "col" }, c)))), latency))));

  let previous = null;
  const history = [];
  const refresh = async () => {
    const samples = parseMetrics(await api("/metrics", { text: true }));
    const now = Date.now() / 1000;
    const dt = previous ? Math.max(now - previous.t, 1e-3) : null;
    const requests = new Map();
    for (const s of samples.filter((x) => x.name === "lossd_requests_total")) {
      const key = `${s.labels.loss}|${s.labels.protocol}`;
      const row = requests.get(key) || { loss: s.labels.loss, protocol: s.labels.protocol, total: 0, errors: 0 };
      row.total += s.value;
      if (s.labels.code !== "OK") row.errors += s.value;
      requests.set(key, row);
    }
    const total = [...requests.values()].reduce((a, r) => a + r.total, 0);
    const rate = dt ? (total - previous.total) / dt : 0;
    const queue = sum(samples, "lossd_queue_depth");
    const inFlight = sum(samples, "lossd_in_flight");
    const batches = histogram(samples, "lossd_batch_size");
    const batchCount = sum(samples, "lossd_batch_size_count"), batchSum = sum(samples, "lossd_batch_size_sum");
    const rejected = sum(samples, "lossd_rejections_total");
    const perLoss = (name) => new Map(samples.filter((s) => s.name === name).map((s) => [s.labels.loss, s.value]));
    const lossBatches = perLoss("lossd_batch_size_count"), lossServed = perLoss("lossd_batch_size_sum");
    // a batch holds calls of one loss from any protocol: its size is per loss
    const meanBatch = (loss) => lossBatches.get(loss) ? format(lossServed.get(loss) / lossBatches.get(loss), 3) : "–";
    history.push({ t: now, rate, queue });
    while (history.length && history[0].t < now - KEEP_S) history.shift();
    tiles.replaceChildren(...[["requests/s", format(rate, 4)], ["queue depth", queue], ["in flight", inFlight],
      ["mean batch size", batchCount ? format(batchSum / batchCount, 3) : "–"],
      ["median batch size", batchCount ? `≤ ${percentile(batches, 0.5, false)}` : "–"], ["rejected", rejected]]
      .map(([k, v]) => h("div", { class: "tile", "data-metric": k }, h("span", { class: "tile-value" }, String(v)), h("span", {}, k))));
    table.replaceChildren(...[...requests.values()].sort((a, b) => b.total - a.total).map((r) => {
      const before = previous && previous.requests.get(`${r.loss}|${r.protocol}`);
      return h("tr", {}, h("th", { scope: "row" }, r.loss), h("td", {}, r.protocol),
        h("td", {}, dt ? format((r.total - (before ? before.total : 0)) / dt, 4) : "–"),
        h("td", {}, dt ? format((r.errors - (before ? before.errors : 0)) / dt, 4) : "–"), h("td", {}, r.total),
        h("td", { "data-mean-batch": r.loss }, meanBatch(r.loss)));
    }));
    const protocols = [...new Set(samples.filter((s) => s.name === "lossd_request_duration_seconds_bucket").map((s) => s.labels.protocol))];
    const hists = Object.fromEntries(protocols.map((p) => [p, histogram(samples, "lossd_request_duration_seconds", (l) => l.protocol === p)]));
    latency.replaceChildren(...protocols.map((p) => {
      const window = minus(hists[p], previous && previous.hists[p]);
      const use = window.length && window[window.length - 1][1] > 0 ? window : hists[p];
      const ms = (q) => { const v = percentile(use, q); return Number.isFinite(v) ? `${format(v * 1000, 3)} ms` : "–"; };
      return h("tr", {}, h("th", { scope: "row" }, p), h("td", {}, ms(0.5)), h("td", {}, ms(0.9)), h("td", {}, ms(0.99)),
        h("td", {}, use.length ? use[use.length - 1][1] : 0));
    }));
    if (history.length > 1) {
      drawSeries(rateFigure, { title: "requests/s", unit: "req/s", points: history.map((p) => ({ t: p.t, value: p.rate })) });
      drawSeries(queueFigure, { title: "queue depth", unit: "requests", points: history.map((p) => ({ t: p.t, value: p.queue })) });
    }
    previous = { t: now, total, requests, hists };
  };
  await refresh();
  let timer = null, stopped = false;
  const tick = async () => {
    try { await refresh(); } catch (error) { if (error.status === 401) stopped = true; }
    if (!stopped) timer = setTimeout(tick, POLL_MS);
  };
  timer = setTimeout(tick, POLL_MS);
  return () => { stopped = true; clearTimeout(timer); };
}
