// The catalogue (every loss of /v1/losses by family, searchable; one loss in detail with its
// curves computed by lossd) and the comparison plot.

import { api, format, h, listLosses, values } from "./api.js";
import { CURVES, FORMULAS, controlsFor, curveBody, grid } from "./curves.js";
import { drawPlot } from "./plot.js";

const FAMILIES = ["regression", "classification", "margin", "boxes", "segmentation", "sequence"];

// POST the curve's request; {loss: [...], grad: [...] | null} along xs.
export async function computeCurve(name, xs, options) {
  const answer = await api(`/v1/losses/${name}`, { method: "POST", body: curveBody(name, xs, options) });
  const grad = CURVES[name].grad;
  return { loss: values(answer.loss), grad: grad ? grad(answer.grads) : null };
}

function dims(tensor) {
  return tensor.dims.map((form) => `(${form.join(", ")})`).join(" or ");
}

function tensorTable(loss) {
  return h("table", { class: "spec" },
    h("caption", {}, "Tensors"),
    h("thead", {}, h("tr", {}, ["name", "role", "shapes", "dtypes", "gradient", "meaning"].map(
      (c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, loss.tensors.map((t) => h("tr", {},
      h("th", { scope: "row" }, h("code", {}, t.name), t.optional ? " (optional)" : ""),
      h("td", {}, t.role), h("td", {}, dims(t)), h("td", {}, t.dtypes.join(", ")),
      h("td", {}, t.differentiable ? "yes" : "no"), h("td", {}, t.description || "")))));
}

function optionTable(loss) {
  const rows = Object.entries(loss.options.properties);
  return h("table", { class: "spec" },
    h("caption", {}, "Options"),
    h("thead", {}, h("tr", {}, ["name", "type", "default", "allowed", "meaning"].map(
      (c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, rows.map(([name, s]) => h("tr", {},
      h("th", { scope: "row" }, h("code", {}, name)),
      h("td", {}, [].concat(s.type || "any").join(" | ")),
      h("td", {}, h("code", {}, JSON.stringify(s.default ?? null))),
      h("td", {}, s.enum ? s.enum.join(", ") : [
        s.minimum !== undefined ? `≥ ${s.minimum}` : s.exclusiveMinimum !== undefined ? `> ${s.exclusiveMinimum}` : "",
        s.maximum !== undefined ? `≤ ${s.maximum}` : s.exclusiveMaximum !== undefined ? `< ${s.exclusiveMaximum}` : "",
      ].filter(Boolean).join(", ")),
      h("td", {}, s.description || "")))));
}

function control(c, onChange) {
  const id = `opt-${c.name}`;
  if (c.kind === "select") {
    const select = h("select", { id, name: c.name, onchange: onChange },
      c.choices.map((v) => h("option", { value: JSON.stringify(v), selected: v === c.value }, String(v))));
    return { element: h("div", { class: "control" }, h("label", { for: id }, c.name), select),
      read: () => JSON.parse(select.value) };
  }
  if (c.kind === "checkbox") {
    const box = h("input", { id, name: c.name, type: "checkbox", checked: c.value, onchange: onChange });
    return { element: h("div", { class: "control" }, box, h("label", { for: id }, c.name)),
      read: () => box.checked };
  }
  const output = h("output", { for: id, id: `${id}-value` }, format(c.value, 4));
  const slider = h("input", { id, name: c.name, type: "range", min: c.min, max: c.max, step: c.step,
    value: c.value, oninput: () => { output.textContent = format(Number(slider.value), 4); onChange(); } });
  return { element: h("div", { class: "control" }, h("label", { for: id }, c.name), slider, output),
    read: () => (c.integer ? Math.round(Number(slider.value)) : Number(slider.value)) };
}

async function lossDetail(container, loss) {
  const curve = CURVES[loss.name];
  const figure = h("figure", { class: "plot-figure", id: `plot-${loss.name}`, "aria-live": "polite" });
  const controls = curve ? controlsFor(loss) : [];
  let timer = null, generation = 0;
  const redraw = async () => {
    const mine = ++generation;
    const options = Object.fromEntries(readers.map(([name, read]) => [name, read()]));
    const xs = grid(...curve.range);
    try {
      const { loss: y, grad } = await computeCurve(loss.name, xs, options);
      if (mine !== generation) return;  // a newer setting is on its way
      const series = [{ name: `${loss.name} loss`, x: xs, y }];
      if (grad) series.push({ name: "gradient", x: xs, y: grad });
      const set = Object.entries(options).map(([k, v]) => `${k}=${v}`).join(", ");
      drawPlot(figure, { title: `${loss.name}${set ? ` (${set})` : ""}: loss and gradient`,
        xLabel: curve.xLabel, series });
      figure.dataset.options = JSON.stringify(options);
    } catch (error) {
      figure.replaceChildren(h("p", { class: "error", role: "alert" }, String(error.message || error)));
    }
  };
  const changed = () => { clearTimeout(timer); timer = setTimeout(redraw, 120); };
  const built = controls.map((c) => [c.name, control(c, changed)]);
  const readers = built.map(([name, b]) => [name, b.read]);
  container.replaceChildren(
    h("h2", { id: "loss-title" }, loss.name),
    h("p", { class: "summary" }, loss.summary.replace(/``/g, "")),
    h("p", { class: "formula", html: FORMULAS[loss.name] || "" }),
    h("p", {}, "PyTorch: ", h("code", {}, loss.torch), " · family: ", loss.family,
      " · ", h("a", { href: `#/try/${loss.name}` }, `Try ${loss.name}`)),
    curve ? h("section", { "aria-labelledby": "curve-title" },
      h("h3", { id: "curve-title" }, "Loss and gradient, computed by lossd"),
      built.length ? h("form", { class: "controls", onsubmit: (e) => e.preventDefault() },
        h("fieldset", {}, h("legend", {}, "Options (the curves redraw)"), built.map(([, b]) => b.element))) : null,
      figure)
      : h("p", { class: "note" }, "CTC sums over every alignment of a sequence: there is no single axis to draw it along. Try it instead."),
    h("div", { class: "scroll" }, tensorTable(loss)), h("div", { class: "scroll" }, optionTable(loss)));
  if (curve) await redraw();
}

export async function showCatalogue(main, selected) {
  const losses = await listLosses();
  document.title = selected ? `${selected} · lossd` : "Losses · lossd";
  const search = h("input", { id: "search", type: "search", placeholder: "mse, margin, torch.nn…",
    "aria-controls": "loss-list" });
  const count = h("p", { id: "loss-count", role: "status" });
  const list = h("div", { id: "loss-list" });
  const detail = h("article", { id: "loss-detail", class: "card", "aria-labelledby": "loss-title" });
  const render = () => {
    const q = search.value.trim().toLowerCase();
    const shown = losses.filter((l) => !q || [l.name, l.summary, l.family, l.torch].join(" ").toLowerCase().includes(q));
    count.textContent = `${shown.length} of ${losses.length} losses`;
    const families = [...FAMILIES, ...new Set(losses.map((l) => l.family).filter((f) => !FAMILIES.includes(f)))];
    list.replaceChildren(...families.map((family) => {
      const mine = shown.filter((l) => l.family === family);
      if (!mine.length) return null;
      return h("section", { class: "family" }, h("h3", {}, family), h("ul", {}, mine.map((l) =>
        h("li", { "data-loss": l.name }, h("a", { href: `#/losses/${l.name}`,
          "aria-current": l.name === selected ? "true" : false }, l.name)))));
    }).filter(Boolean));
  };
  search.addEventListener("input", render);
  render();
  main.replaceChildren(h("div", { class: "catalogue" },
    h("aside", { class: "card" }, h("h1", {}, "Losses"),
      h("label", { for: "search" }, "Search"), search, count, list),
    detail));
  const loss = losses.find((l) => l.name === selected) || losses.find((l) => l.name === "huber");
  if (!loss) return;
  const drawn = lossDetail(detail, loss);
  if (selected) {  // a loss picked from the list: take focus (and, on a phone, the view) there
    const title = document.getElementById("loss-title");
    title.setAttribute("tabindex", "-1");
    title.focus();
  }
  await drawn;
}

export const COMPARED = ["mse", "l1", "smooth_l1", "huber"];

export async function showCompare(main) {
  document.title = "Compare · lossd";
  const xs = grid(-3, 3);
  const lossFigure = h("figure", { class: "plot-figure", id: "compare-loss" });
  const gradFigure = h("figure", { class: "plot-figure", id: "compare-grad" });
  let timer = null;
  const changed = () => { clearTimeout(timer); timer = setTimeout(redraw, 120); };
  const beta = control({ name: "beta", kind: "range", min: 0, max: 3, step: 0.01, value: 1 }, changed);
  const delta = control({ name: "delta", kind: "range", min: 0.01, max: 3, step: 0.01, value: 1 }, changed);
  main.replaceChildren(h("article", { class: "card" },
    h("h1", {}, "MSE vs L1 vs smooth L1 vs Huber"),
    h("p", {}, "The same predictions (target 0) sent to each loss with reduction none and grad true. ",
      "At β = δ the smooth L1 curve is the Huber curve divided by β; β = 0 is L1, and Huber grows like δ·|x| far out."),
    h("form", { class: "controls", onsubmit: (e) => e.preventDefault() }, h("fieldset", {},
      h("legend", {}, "smooth_l1 β and huber δ (the curves redraw)"), beta.element, delta.element)),
    h("div", { class: "pair" }, lossFigure, gradFigure)));
  async function redraw() {
    const options = { mse: {}, l1: {}, smooth_l1: { beta: beta.read() }, huber: { delta: delta.read() } };
    const curves = await Promise.all(COMPARED.map((name) => computeCurve(name, xs, options[name])));
    const label = (name) => (name === "smooth_l1" ? `smooth_l1 (β=${options.smooth_l1.beta})`
      : name === "huber" ? `huber (δ=${options.huber.delta})` : name);
    drawPlot(lossFigure, { title: "Loss", xLabel: "prediction x (target 0)",
      series: COMPARED.map((name, i) => ({ name: label(name), x: xs, y: curves[i].loss })) });
    drawPlot(gradFigure, { title: "Gradient", xLabel: "prediction x (target 0)",
      series: COMPARED.map((name, i) => ({ name: label(name), x: xs, y: curves[i].grad })) });
    lossFigure.dataset.options = gradFigure.dataset.options = JSON.stringify(options);
  }
  await redraw();
}
