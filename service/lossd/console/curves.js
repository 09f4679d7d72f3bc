// What to draw for each loss: one request to lossd (reduction "none", grad true) whose
// per-sample answers, read along a grid of x values, are the loss curve and its gradient.
//   regression and margin losses: against the prediction, for a fixed target;
//   classification: against the logit (or score) of the true class, the others at 0;
//   IoU losses: against the offset of a unit box from the true one (overlap 1 at 0, 0 at ±1).

import { f64, i64, values } from "./api.js";

export function grid(lo, hi, n = 61) {
  return Array.from({ length: n }, (_, i) => Number((lo + ((hi - lo) * i) / (n - 1)).toPrecision(12)));
}

const fill = (n, v) => Array(n).fill(v);
const every = (list, stride, start = 0) => list.filter((_, i) => i % stride === start);

// input = x, target fixed: the elementwise losses
function elementwise(lo, hi, target, { input = "input", targetName = "target", extra = {},
  xLabel = "prediction x", column = false } = {}) {
  return {
    range: [lo, hi], xLabel: `${xLabel} (target ${target})`,
    inputs(xs) {
      const n = xs.length, shape = column ? [n, 1] : [n];
      const out = { [input]: f64(shape, xs), [targetName]: f64(shape, fill(n, target)) };
      for (const [name, make] of Object.entries(extra)) out[name] = make(n, shape);
      return out;
    },
    grad: (grads) => values(grads[input]),
  };
}

// rows [x, 0, 0] with true class 0: the softmax classification losses
function trueClass(lo, hi, { transform = (row) => row, xLabel = "logit of the true class" } = {}) {
  return {
    range: [lo, hi], xLabel: `${xLabel} (other classes at 0)`,
    inputs: (xs) => ({ input: f64([xs.length, 3], xs.flatMap((x) => transform([x, 0, 0]))),
      target: i64([xs.length], fill(xs.length, 0)) }),
    grad: (grads) => every(values(grads.input), 3),
  };
}

const logSoftmax = (row) => {
  const m = Math.max(...row);
  const lse = m + Math.log(row.reduce((s, v) => s + Math.exp(v - m), 0));
  return row.map((v) => v - lse);
};

function boxes(lo = -2, hi = 2) {
  return {
    range: [lo, hi], xLabel: "offset of the predicted unit box (overlap 1 at 0, none beyond ±1)",
    inputs: (xs) => ({ boxes1: f64([xs.length, 4], xs.flatMap((s) => [s, 0, s + 1, 1])),
      boxes2: f64([xs.length, 4], xs.flatMap(() => [0, 0, 1, 1])) }),
    // d/ds of the loss: the box moves as a whole, x1 and x2 together
    grad: (grads) => { const g = values(grads.boxes1); return every(g, 4, 0).map((v, i) => v + g[4 * i + 2]); },
  };
}

function overlap() {
  return {
    range: [0, 1], xLabel: "predicted probability of a foreground pixel (target 1)",
    inputs: (xs) => ({ input: f64([xs.length, 1, 1], xs), target: f64([xs.length, 1, 1], fill(xs.length, 1)) }),
    grad: (grads) => values(grads.input),
  };
}

function triplet() {
  return {
    range: [0, 3], xLabel: "distance from anchor to negative (positive at 1)",
    inputs: (xs) => ({ anchor: f64([xs.length, 2], fill(2 * xs.length, 0)),
      positive: f64([xs.length, 2], xs.flatMap(() => [1, 0])),
      negative: f64([xs.length, 2], xs.flatMap((x) => [x, 0])) }),
    grad: (grads) => every(values(grads.negative), 2),
  };
}

export const CURVES = {
  l1: elementwise(-3, 3, 0),
  mse: elementwise(-3, 3, 0),
  l2: elementwise(-3, 3, 0),
  smooth_l1: elementwise(-3, 3, 0),
  huber: elementwise(-3, 3, 0),
  log_cosh: elementwise(-3, 3, 0),
  mape: elementwise(-1, 3, 1),
  msle: elementwise(0, 4, 1),
  poisson_nll: elementwise(-2, 3, 2, { xLabel: "log-rate x" }),
  gaussian_nll: elementwise(-3, 3, 0, { extra: { var: (n, shape) => f64(shape, fill(n, 1)) },
    xLabel: "mean x, variance 1" }),
  kl_div: elementwise(-4, 0, 0.5, { xLabel: "log-probability x" }),
  binary_cross_entropy: elementwise(0.01, 0.99, 1, { xLabel: "probability x" }),
  binary_cross_entropy_with_logits: elementwise(-6, 6, 1, { xLabel: "logit x" }),
  sigmoid_focal: elementwise(-6, 6, 1, { input: "inputs", targetName: "targets", xLabel: "logit x" }),
  multilabel_soft_margin: elementwise(-6, 6, 1, { column: true, xLabel: "logit x" }),
  cross_entropy: trueClass(-6, 6),
  poly1_cross_entropy: trueClass(-6, 6),
  softmax_focal: trueClass(-6, 6),
  nll: trueClass(-6, 6, { transform: logSoftmax, xLabel: "logit of the true class, input = log_softmax" }),
  multi_margin: trueClass(-3, 3, { xLabel: "score of the true class" }),
  multilabel_margin: {
    range: [-3, 3], xLabel: "score of the true label (the other at 0)",
    inputs: (xs) => ({ input: f64([xs.length, 2], xs.flatMap((x) => [x, 0])),
      target: i64([xs.length, 2], xs.flatMap(() => [0, -1])) }),
    grad: (grads) => every(values(grads.input), 2),
  },
  hinge: elementwise(-3, 3, 1, { column: true, xLabel: "score x" }),
  squared_hinge: elementwise(-3, 3, 1, { column: true, xLabel: "score x" }),
  soft_margin: elementwise(-3, 3, 1, { xLabel: "score x" }),
  hinge_embedding: elementwise(0, 3, -1, { xLabel: "distance x" }),
  margin_ranking: {
    range: [-3, 3], xLabel: "score of the first item x1 (x2 = 0, target 1)",
    inputs: (xs) => ({ input1: f64([xs.length], xs), input2: f64([xs.length], fill(xs.length, 0)),
      target: f64([xs.length], fill(xs.length, 1)) }),
    grad: (grads) => values(grads.input1),
  },
  cosine_embedding: {
    range: [-1, 1], xLabel: "cosine similarity of a dissimilar pair (target -1)",
    inputs: (xs) => ({ input1: f64([xs.length, 2], xs.flatMap((c) => [c, Math.sqrt(Math.max(0, 1 - c * c))])),
      input2: f64([xs.length, 2], xs.flatMap(() => [1, 0])), target: i64([xs.length], fill(xs.length, -1)) }),
    grad: null,  // the gradient is a vector in input1's plane, not along the cosine
  },
  triplet_margin: triplet(),
  triplet_margin_with_distance: triplet(),
  box_iou: boxes(),
  generalized_box_iou: boxes(),
  distance_box_iou: boxes(),
  complete_box_iou: boxes(),
  dice: overlap(),
  jaccard: overlap(),
  tversky: overlap(),
  ctc: null,  // a sum over alignments: no single axis to draw it along (try it instead)
};

// The request body for `name` over `xs` with `options` (reduction forced to "none").
export function curveBody(name, xs, options = {}) {
  const curve = CURVES[name];
  return { inputs: curve.inputs(xs), options: { ...options, reduction: "none" }, grad: curve.grad !== null };
}

// Options that redraw a curve: numbers get a slider, choices a select, flags a checkbox.
const FIXED = new Set(["reduction", "eps", "smooth", "ignore_index", "blank", "zero_infinity"]);
const TOP = { delta: 3, beta: 3, margin: 3, gamma: 5, label_smoothing: 1, alpha: 1, epsilon: 5,
  p: 3, full: 1 };

export function controlsFor(loss) {
  const out = [];
  for (const [name, schema] of Object.entries(loss.options.properties)) {
    if (FIXED.has(name)) continue;
    const type = [].concat(schema.type || []);
    const choices = schema.enum;
    if (choices && choices.length) out.push({ name, kind: "select", choices, value: schema.default });
    else if (type.includes("boolean")) out.push({ name, kind: "checkbox", value: Boolean(schema.default) });
    else if (type.includes("number") || type.includes("integer")) {
      const integer = !type.includes("number");
      const min = schema.minimum ?? schema.exclusiveMinimum ?? 0;
      const max = schema.maximum ?? schema.exclusiveMaximum ?? Math.max(TOP[name] ?? 3, (schema.default ?? 0) * 2);
      const value = schema.default ?? (integer ? min : (min + max) / 2);
      // a round step (0.01 for a range of 3), so that round values such as the default are on it
      const step = integer ? 1 : 10 ** Math.floor(Math.log10((max - min) / 100));
      out.push({ name, kind: "range", min, max, step, value, integer });
    }
  }
  return out;
}

// Formulas, written as HTML (x: input, y: target; d = x − y).
const D = "<var>d</var>", X = "<var>x</var>", Y = "<var>y</var>";
export const FORMULAS = {
  l1: `ℓ = |${X} − ${Y}|`,
  mse: `ℓ = (${X} − ${Y})<sup>2</sup>`,
  l2: `mse: (${X} − ${Y})<sup>2</sup>; sse: Σ (${X} − ${Y})<sup>2</sup>; half_sse: ½ Σ (${X} − ${Y})<sup>2</sup>; norm: ‖${X} − ${Y}‖<sub>2</sub>`,
  smooth_l1: `ℓ = 0.5 ${D}<sup>2</sup> / β if |${D}| &lt; β, else |${D}| − 0.5 β &nbsp; (${D} = ${X} − ${Y})`,
  huber: `ℓ = 0.5 ${D}<sup>2</sup> if |${D}| ≤ δ, else δ (|${D}| − 0.5 δ) &nbsp; (${D} = ${X} − ${Y})`,
  log_cosh: `ℓ = log cosh(${X} − ${Y})`,
  mape: `ℓ = 100 · |${Y} − ${X}| / max(|${Y}|, ε)`,
  msle: `ℓ = (log(1 + max(${X}, ε)) − log(1 + max(${Y}, ε)))<sup>2</sup>`,
  poisson_nll: `ℓ = e<sup>${X}</sup> − ${Y} ${X} (log_input), else ${X} − ${Y} log(${X} + ε)`,
  gaussian_nll: `ℓ = ½ (log <var>v</var> + (${X} − ${Y})<sup>2</sup> / <var>v</var>), &nbsp;<var>v</var> = max(var, ε)`,
  kl_div: `ℓ = ${Y} log ${Y} − ${Y} ${X} &nbsp;(${X} = log q)`,
  binary_cross_entropy: `ℓ = −<var>w</var> [${Y} log ${X} + (1 − ${Y}) log(1 − ${X})], logs clamped at −100`,
  binary_cross_entropy_with_logits: `ℓ = −<var>w</var> [<var>p</var> ${Y} log σ(${X}) + (1 − ${Y}) log σ(−${X})]`,
  cross_entropy: `ℓ<sub>i</sub> = (1 − ε) <var>w</var><sub>y</sub> (−log <var>p</var><sub>y</sub>) + (ε / C) Σ<sub>c</sub> <var>w</var><sub>c</sub> (−log <var>p</var><sub>c</sub>), &nbsp;<var>p</var> = softmax(${X})`,
  nll: `ℓ<sub>i</sub> = −<var>w</var><sub>y</sub> ${X}<sub>i,y</sub> &nbsp;(${X} = log-probabilities)`,
  multilabel_soft_margin: `ℓ<sub>i</sub> = −(1/C) Σ<sub>c</sub> <var>w</var><sub>c</sub> [${Y}<sub>c</sub> log σ(${X}<sub>c</sub>) + (1 − ${Y}<sub>c</sub>) log σ(−${X}<sub>c</sub>)]`,
  poly1_cross_entropy: `ℓ<sub>i</sub> = −log <var>p</var><sub>y</sub> + ε (1 − <var>p</var><sub>y</sub>), &nbsp;<var>p</var> = softmax(${X})`,
  softmax_focal: `ℓ<sub>i</sub> = −α<sub>y</sub> (1 − <var>p</var><sub>y</sub>)<sup>γ</sup> log <var>p</var><sub>y</sub>, &nbsp;<var>p</var> = softmax(${X})`,
  hinge: `ℓ = mean<sub>last</sub> max(0, 1 − ${Y} ${X})`,
  squared_hinge: `ℓ = mean<sub>last</sub> max(0, 1 − ${Y} ${X})<sup>2</sup>`,
  soft_margin: `ℓ = log(1 + e<sup>−${Y} ${X}</sup>)`,
  hinge_embedding: `ℓ = ${X} if ${Y} = 1; max(0, margin − ${X}) if ${Y} = −1`,
  margin_ranking: `ℓ = max(0, −${Y} (${X}<sub>1</sub> − ${X}<sub>2</sub>) + margin)`,
  cosine_embedding: `ℓ = 1 − cos(${X}<sub>1</sub>, ${X}<sub>2</sub>) if ${Y} = 1; max(0, cos(${X}<sub>1</sub>, ${X}<sub>2</sub>) − margin) if ${Y} = −1`,
  multi_margin: `ℓ<sub>i</sub> = Σ<sub>j ≠ y</sub> <var>w</var><sub>y</sub> max(0, margin − ${X}<sub>y</sub> + ${X}<sub>j</sub>)<sup><var>p</var></sup> / C`,
  multilabel_margin: `ℓ<sub>i</sub> = Σ<sub>j ∈ T</sub> Σ<sub>k ∉ T</sub> max(0, 1 − (${X}<sub>j</sub> − ${X}<sub>k</sub>)) / C`,
  triplet_margin: `ℓ = max(0, <var>d</var>(<var>a</var>, <var>p</var>) − <var>d</var>(<var>a</var>, <var>n</var>) + margin), &nbsp;<var>d</var>(u, v) = ‖u − v + ε‖<sub><var>p</var></sub>`,
  triplet_margin_with_distance: `ℓ = max(0, <var>d</var>(<var>a</var>, <var>p</var>) − <var>d</var>(<var>a</var>, <var>n</var>) + margin), &nbsp;<var>d</var> = pairwise distance or 1 − cosine`,
  ctc: `ℓ<sub>n</sub> = −log Σ<sub>π ∈ B<sup>−1</sup>(y<sub>n</sub>)</sub> Π<sub>t</sub> <var>p</var><sub>t</sub>(π<sub>t</sub>)`,
  box_iou: `ℓ = 1 − inter / (union + ε)`,
  generalized_box_iou: `ℓ = 1 − IoU + (A<sub>c</sub> − union) / (A<sub>c</sub> + ε), &nbsp;A<sub>c</sub> = area of the enclosing box`,
  distance_box_iou: `ℓ = 1 − IoU + ρ<sup>2</sup> / (c<sup>2</sup> + ε), &nbsp;ρ: distance of the centres, c: diagonal of the enclosing box`,
  complete_box_iou: `ℓ = DIoU + α <var>v</var>, &nbsp;<var>v</var> = (4/π<sup>2</sup>)(atan(w<sub>g</sub>/h<sub>g</sub>) − atan(w/h))<sup>2</sup>, &nbsp;α = <var>v</var> / (1 − IoU + <var>v</var> + ε)`,
  sigmoid_focal: `ℓ = α<sub>t</sub> · BCE(${X}, <var>t</var>) · (1 − <var>p</var><sub>t</sub>)<sup>γ</sup>, &nbsp;<var>p</var> = σ(${X})`,
  dice: `ℓ = 1 − (2 TP + smooth) / max(Σ<var>p</var> + Σ<var>t</var> + smooth, ε)`,
  jaccard: `ℓ = 1 − (TP + smooth) / max(Σ<var>p</var> + Σ<var>t</var> − TP + smooth, ε)`,
  tversky: `ℓ = (1 − (TP + smooth) / max(TP + α FP + β FN + smooth, ε))<sup>γ</sup>`,
};

// Example tensors for "Try it": three points of the curve (CTC written out).
export function example(name) {
  if (name === "ctc") {
    const lp = logSoftmax([0.5, 0.2, -0.3]), lq = logSoftmax([0.1, 0.9, 0.0]);
    const round = (v) => Number(v.toFixed(4));
    return {
      log_probs: f64([4, 1, 3], [...lp, ...lq, ...lp, ...lq].map(round)),
      targets: i64([1, 2], [1, 2]), input_lengths: i64([1], [4]), target_lengths: i64([1], [2]),
    };
  }
  if (name === "cross_entropy") {
    return { input: f64([2, 3], [2.0, 0.5, -1.0, 0.1, 0.2, 3.0]), target: i64([2], [0, 2]) };
  }
  const curve = CURVES[name];
  const [lo, hi] = curve.range;
  return curve.inputs(grid(lo, hi, 5).slice(1, 4));
}
