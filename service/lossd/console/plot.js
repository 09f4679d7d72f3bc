// A small SVG line plot: series of (x, y) with axes, ticks, a legend and, for screen readers
// and for tests, the plotted numbers in a table and in the figure's data-series attribute.

import { format, h } from "./api.js";

const NS = "http://www.w3.org/2000/svg";
const W = 640, H = 340, M = { left: 56, right: 16, top: 14, bottom: 44 };
// colours with at least 4.5:1 contrast on white, told apart by dash pattern too
export const COLOURS = ["#1d4f91", "#b3261e", "#1b6e3a", "#6a3d9a", "#8a5a00", "#00647a"];
const DASHES = ["", "6 4", "2 3", "10 3 2 3", "1 2", "8 2"];

function svg(tag, attrs = {}) {
  const element = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) element.setAttribute(k, v);
  return element;
}

function ticks(lo, hi, count = 5) {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const step0 = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * step0).find((s) => s >= raw) || raw;
  const out = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) {
    out.push(Math.abs(t) < step * 1e-9 ? 0 : t);
  }
  return out;
}

// Draw into `figure` (replacing what was there).
// series: [{name, x: [...], y: [...]}]; y values may be NaN or ±Infinity (gaps).
export function drawPlot(figure, { title, xLabel, yLabel, series }) {
  const finite = series.flatMap((s) => s.y.filter(Number.isFinite));
  let ylo = finite.length ? Math.min(...finite) : 0;
  let yhi = finite.length ? Math.max(...finite) : 1;
  if (ylo === yhi) { ylo -= 1; yhi += 1; }
  const pad = (yhi - ylo) * 0.05;
  ylo -= pad; yhi += pad;
  const xs = series.flatMap((s) => s.x);
  const xlo = Math.min(...xs), xhi = Math.max(...xs);
  const px = (x) => M.left + ((x - xlo) / (xhi - xlo || 1)) * (W - M.left - M.right);
  const py = (y) => H - M.bottom - ((y - ylo) / (yhi - ylo)) * (H - M.top - M.bottom);

  const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", class: "plot",
    "aria-label": `${title}: ${series.map((s) => s.name).join(", ")} against ${xLabel}` });
  const grid = svg("g", { class: "grid" });
  for (const t of ticks(ylo, yhi)) {
    grid.append(svg("line", { x1: M.left, x2: W - M.right, y1: py(t), y2: py(t) }));
    const label = svg("text", { x: M.left - 6, y: py(t) + 4, "text-anchor": "end" });
    label.textContent = format(t, 3);
    grid.append(label);
  }
  for (const t of ticks(xlo, xhi)) {
    grid.append(svg("line", { x1: px(t), x2: px(t), y1: M.top, y2: H - M.bottom }));
    const label = svg("text", { x: px(t), y: H - M.bottom + 16, "text-anchor": "middle" });
    label.textContent = format(t, 3);
    grid.append(label);
  }
  chart.append(grid);
  if (ylo < 0 && yhi > 0) {
    chart.append(svg("line", { class: "zero", x1: M.left, x2: W - M.right, y1: py(0), y2: py(0) }));
  }
  const xname = svg("text", { x: (M.left + W - M.right) / 2, y: H - 8, "text-anchor": "middle",
    class: "axis-name" });
  xname.textContent = xLabel;
  chart.append(xname);
  if (yLabel) {
    const yname = svg("text", { x: M.left + 6, y: M.top + 12, class: "axis-name" });
    yname.textContent = yLabel;
    chart.append(yname);
  }
  series.forEach((s, i) => {
    let d = "", pen = false;
    s.x.forEach((x, j) => {
      const y = s.y[j];
      if (!Number.isFinite(y)) { pen = false; return; }
      const yc = Math.min(Math.max(y, ylo), yhi);
      d += `${pen ? "L" : "M"}${px(x).toFixed(2)},${py(yc).toFixed(2)}`;
      pen = true;
    });
    chart.append(svg("path", { d, class: "line", stroke: COLOURS[i % COLOURS.length],
      "stroke-dasharray": DASHES[i % DASHES.length], "data-name": s.name }));
  });

  const legend = h("ul", { class: "legend" }, series.map((s, i) => {
    const swatch = svg("svg", { class: "swatch", viewBox: "0 0 28 6", "aria-hidden": "true" });
    swatch.append(svg("line", { x1: 0, x2: 28, y1: 3, y2: 3, class: "line", stroke: COLOURS[i % COLOURS.length],
      "stroke-dasharray": DASHES[i % DASHES.length] }));
    return h("li", {}, swatch, s.name);
  }));
  const table = h("table", {},
    h("caption", {}, title),
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, xLabel),
      series.map((s) => h("th", { scope: "col" }, s.name)))),
    h("tbody", {}, (series[0] ? series[0].x : []).map((x, j) => h("tr", {},
      h("th", { scope: "row" }, format(x, 4)), series.map((s) => h("td", {}, format(s.y[j])))))));
  figure.replaceChildren(h("figcaption", {}, title), chart, legend,
    h("details", { class: "values" }, h("summary", {}, "Plotted values"), table));
  figure.dataset.series = JSON.stringify(Object.fromEntries(series.map((s) => [s.name,
    { x: s.x, y: s.y.map((y) => (Number.isFinite(y) ? y : String(y))) }])));
  figure.dataset.ready = String(Number(figure.dataset.ready || 0) + 1);
}

// A sparkline-style time series (the Load page): points [{t, value}] over the last minutes.
export function drawSeries(figure, { title, unit, points }) {
  const now = Date.now() / 1000;
  drawPlot(figure, {
    title, xLabel: "seconds ago", yLabel: unit,
    series: [{ name: title, x: points.map((p) => Math.round(p.t - now)), y: points.map((p) => p.value) }],
  });
}
