"""Core vs torch: median time of lossd's NumPy core and of torch CPU on the same inputs.

For every registered loss (the REGISTRY, in its order) a per-loss input factory builds inputs
with about 1e3, 1e5 and 1e6 elements in the main input. Each is timed four ways, interleaved
so that noise on a shared machine hits both sides alike:

    core        lossd.losses.compute(name, arrays, options)               (reduction mean)
    torch       the torch call of tests/reference (torch.nn.functional, torchvision's formulas)
    core+grad   compute(..., grad=True)                      (validation, loss, every gradient)
    torch f+b   forward, then torch.autograd.grad over the same differentiable tensors

The torch side of the losses beyond torch (log_cosh, mape, msle, dice, jaccard, tversky) is
their definition in torch ops at the input's dtype, as a user would write it (the test oracles
evaluate those in float64 for exactness, which would be an unfair baseline). Ratios are
core / torch (below 1: the core is faster); the geometric mean is over every loss at a size.
torch runs with its default thread count (``torch.get_num_threads()``).

    python -m bench.core                     # float32, all losses, writes docs/benchmarks.md
                                             # and bench/results/core.json
    python -m bench.core --dtype float64 --sizes 1e6 --losses mse,cross_entropy --no-write
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import os
import platform
import re
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lossd.losses import REGISTRY, compute
from tests.reference import torch_module_for

Arrays = dict[str, np.ndarray]
Options = dict[str, Any]
Factory = Callable[[np.random.Generator, int, str], tuple[Arrays, Options]]

SIZES = (1_000, 100_000, 1_000_000)
DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
RESULTS = DOC.parent.parent / "bench" / "results" / "core.json"  # for bench/plots.py
HEADING = "## Core vs torch"
CLASSES = 10  # classes of the class-scored losses (N, 10)
FEATURES = 64  # embedding width of the pairwise losses (N, 64)


# --- input factories: (rng, elements of the main input, float dtype) -> (arrays, options) --------

def _normal(rng: np.random.Generator, shape: tuple[int, ...], dtype: str,
            scale: float = 1.0) -> np.ndarray:
    return (rng.standard_normal(shape) * scale).astype(dtype)


def _uniform(rng: np.random.Generator, shape: tuple[int, ...], dtype: str, low: float = 0.0,
             high: float = 1.0) -> np.ndarray:
    return rng.uniform(low, high, shape).astype(dtype)


def _signs(rng: np.random.Generator, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    return np.where(rng.random(shape) < 0.5, -1.0, 1.0).astype(dtype)


def _rows(n: int, width: int) -> tuple[int, int]:
    return max(n // width, 1), width


def _pair(rng: np.random.Generator, n: int, dtype: str) -> tuple[Arrays, Options]:
    """input and target of one shape (N, 100) (elementwise regression losses)."""
    shape = _rows(n, 100)
    return {"input": _normal(rng, shape, dtype), "target": _normal(rng, shape, dtype)}, {}


def _positive_pair(rng: np.random.Generator, n: int, dtype: str) -> tuple[Arrays, Options]:
    shape = _rows(n, 100)
    return {"input": _uniform(rng, shape, dtype, 0.1, 5.0),
            "target": _uniform(rng, shape, dtype, 0.1, 5.0)}, {}


def _gaussian(rng: np.random.Generator, n: int, dtype: str) -> tuple[Arrays, Options]:
    arrays, _ = _pair(rng, n, dtype)
    return {**arrays, "var": _uniform(rng, arrays["input"].shape, dtype, 0.1, 2.0)}, {}


def _poisson(rng: np.random.Generator, n: int, dtype: str) -> tuple[Arrays, Options]:
    shape = _rows(n, 100)
    return {"input": _normal(rng, shape, dtype),
            "target": rng.poisson(2.0, shape).astype(dtype)}, {}


def _logits_indices(rng: np.random.Generator, n: int, dtype: str) -> tuple[Arrays, Options]:
    """(N, 10) logits and int64 class indices (N,)."""
    shape = _rows(n, CLASSES)
    return {"input": _normal(rng, shape, dtype, 2.0),
            "target": rng.integers(0, CLASSES, shape[0])}, {}


def _log_probabilities(rng: np.random.Generator, n: int, dtype: str) -> tuple[Arrays, Options]:
    arrays, _ = _logits_indices(rng, n, dtype)
    x = arrays["input"].astype(np.float64)
    x -= x.max(axis=1, keepdims=True)
    x -= np.log(np.exp(x).sum(axis=1, keepdims=True))
    return {**arrays, "input": x.astype(dtype)}, {}


def _kl_div(rng: np.random.Generator, n: int, dtype: str) -> tuple[Arrays, Options]:
    arrays, _ = _log_probabilities(rng, n, dtype)
    target = _uniform(rng, arrays["input"].shape, "float64", 0.05, 1.0)
    target /= target.sum(axis=1, keepdims=True)
    return {"input": arrays["input"], "target": target.astype(dtype)}, {}


def _probabilities_binary(rng: np.random.Generator, n: int, dtype: str
                          ) -> tuple[Arrays, Options]:
    shape = _rows(n, CLASSES)
    return {"input": _uniform(rng, shape, dtype, 0.01, 0.99),
            "target": (rng.random(shape) < 0.5).astype(dtype)}, {}


def _logits_binary(rng: np.random.Generator, n: int, dtype: str) -> tuple[Arrays, Options]:
    shape = _rows(n, CLASSES)
    return {"input": _normal(rng, shape, dtype, 2.0),
            "target": (rng.random(shape) < 0.5).astype(dtype)}, {}


def _logits_signs(rng: np.random.Generator, n: int, dtype: str) -> tuple[Arrays, Options]:
    shape = _rows(n, CLASSES)
    return {"input": _normal(rng, shape, dtype), "target": _signs(rng, shape, dtype)}, {}


def _focal_binary(rng: np.random.Generator, n: int, dtype: str) -> tuple[Arrays, Options]:
    arrays, _ = _logits_binary(rng, n, dtype)
    return {"inputs": arrays["input"], "targets": arrays["target"]}, {"reduction": "mean"}


def _flat_signs(rng: np.random.Generator, n: int, dtype: str) -> tuple[Arrays, Options]:
    return {"input": _normal(rng, (n,), dtype), "target": _signs(rng, (n,), dtype)}, {}


def _ranking(rng: np.random.Generator, n: int, dtype: str) -> tuple[Arrays, Options]:
    return {"input1": _normal(rng, (n,), dtype), "input2": _normal(rng, (n,), dtype),
            "target": _signs(rng, (n,), dtype)}, {}


def _cosine_pairs(rng: np.random.Generator, n: int, dtype: str) -> tuple[Arrays, Options]:
    shape = _rows(n, FEATURES)
    return {"input1": _normal(rng, shape, dtype), "input2": _normal(rng, shape, dtype),
            "target": _signs(rng, shape[:1], dtype)}, {}


def _multi_margin(rng: np.random.Generator, n: int, dtype: str) -> tuple[Arrays, Options]:
    shape = _rows(n, CLASSES)
    return {"input": _normal(rng, shape, dtype),
            "target": rng.integers(0, CLASSES, shape[0])}, {}


def _multilabel_margin(rng: np.random.Generator, n: int, dtype: str
                       ) -> tuple[Arrays, Options]:
    """Each row: a random number of distinct labels, then -1 padding."""
    shape = _rows(n, CLASSES)
    labels = np.argsort(rng.random(shape), axis=1)
    count = rng.integers(1, CLASSES, (shape[0], 1))
    target = np.where(np.arange(CLASSES) < count, labels, -1)
    return {"input": _normal(rng, shape, dtype), "target": target.astype(np.int64)}, {}


def _triplets(rng: np.random.Generator, n: int, dtype: str) -> tuple[Arrays, Options]:
    shape = _rows(n, FEATURES)
    return {name: _normal(rng, shape, dtype) for name in ("anchor", "positive", "negative")}, {}


def _boxes(rng: np.random.Generator, n: int, dtype: str) -> tuple[Arrays, Options]:
    """(N, 4) xyxy boxes and partners nearby (tests/reference/boxes.py, at scale)."""
    count = max(n // 4, 1)
    corner = rng.uniform(0.0, 10.0, (count, 2))
    side = rng.uniform(0.5, 5.0, (count, 2))
    boxes1 = np.concatenate([corner, corner + side], axis=-1)
    moved = boxes1 + rng.standard_normal(boxes1.shape)
    boxes2 = np.concatenate([np.minimum(moved[:, :2], moved[:, 2:]),
                             np.maximum(moved[:, :2], moved[:, 2:])], axis=-1)
    boxes2[2::3] += 20.0  # every third pair apart (no overlap)
    return {"boxes1": boxes1.astype(dtype), "boxes2": boxes2.astype(dtype)}, {"reduction": "mean"}


def _segmentation(rng: np.random.Generator, n: int, dtype: str) -> tuple[Arrays, Options]:
    """(N, 4, H, W) class probabilities and (N, H, W) index targets."""
    classes = 4
    side = max(int(math.sqrt(n / (2 * classes))), 1)
    batch = max(n // (classes * side * side), 1)
    raw = _uniform(rng, (batch, classes, side, side), "float64", 0.05, 1.0)
    return {"input": (raw / raw.sum(axis=1, keepdims=True)).astype(dtype),
            "target": rng.integers(0, classes, (batch, side, side))}, {}


def _ctc(rng: np.random.Generator, n: int, dtype: str) -> tuple[Arrays, Options]:
    """(T, N, 20) log-probabilities, padded targets of up to T/4 labels, all feasible."""
    classes = 20
    steps = {1_000: 25, 100_000: 100}.get(n, 200)
    batch = max(n // (steps * classes), 1)
    width = steps // 4
    x = rng.standard_normal((steps, batch, classes)) * 2.0
    x -= x.max(axis=-1, keepdims=True)
    x -= np.log(np.exp(x).sum(axis=-1, keepdims=True))
    target_lengths = rng.integers(1, width + 1, batch)
    targets = rng.integers(1, classes, (batch, width))
    return {"log_probs": x.astype(dtype if dtype != "float16" else "float32"),
            "targets": targets, "input_lengths": np.full(batch, steps),
            "target_lengths": target_lengths}, {}


FACTORIES: dict[str, Factory] = {
    "box_iou": _boxes, "generalized_box_iou": _boxes, "distance_box_iou": _boxes,
    "complete_box_iou": _boxes, "sigmoid_focal": _focal_binary,
    "cross_entropy": _logits_indices, "nll": _log_probabilities, "kl_div": _kl_div,
    "binary_cross_entropy": _probabilities_binary,
    "binary_cross_entropy_with_logits": _logits_binary,
    "multilabel_soft_margin": _logits_binary, "poly1_cross_entropy": _logits_indices,
    "softmax_focal": _logits_indices, "hinge_embedding": _flat_signs, "soft_margin": _flat_signs,
    "margin_ranking": _ranking, "cosine_embedding": _cosine_pairs,
    "multi_margin": _multi_margin, "multilabel_margin": _multilabel_margin,
    "triplet_margin": _triplets, "triplet_margin_with_distance": _triplets,
    "hinge": _logits_signs, "squared_hinge": _logits_signs,
    "l1": _pair, "mse": _pair, "l2": _pair, "smooth_l1": _pair, "huber": _pair,
    "poisson_nll": _poisson, "gaussian_nll": _gaussian, "log_cosh": _pair,
    "mape": _positive_pair, "msle": _positive_pair,
    "dice": _segmentation, "jaccard": _segmentation, "tversky": _segmentation, "ctc": _ctc,
}


# --- torch baselines -----------------------------------------------------------------------------

def _native_beyond_torch(name: str, t: dict[str, Any], options: Options) -> Any:
    """The losses beyond torch in torch ops at the input's dtype (definitions as in
    tests/reference, without their float64 evaluation), reduced by mean; None if not one."""
    import torch
    import torch.nn.functional as F

    if name in ("log_cosh", "mape", "msle"):
        x, y = t["input"], t["target"]
        eps = options.get("eps", 1e-7)
        if name == "log_cosh":
            d = x - y
            return (torch.logaddexp(d, -d) - math.log(2.0)).mean()
        if name == "mape":
            return (100 * (y - x).abs() / y.abs().clamp_min(eps)).mean()
        return (torch.log1p(x.clamp_min(eps)) - torch.log1p(y.clamp_min(eps))).square().mean()
    if name in ("dice", "jaccard", "tversky"):
        x, y = t["input"], t["target"]
        n, c = x.shape[:2]
        p = x.reshape(n, c, -1)
        m = F.one_hot(y.reshape(n, -1), c).transpose(1, 2).to(x.dtype)
        smooth, eps = options.get("smooth", 1e-5), options.get("eps", 1e-7)
        tp = (p * m).sum(2)
        if name == "dice":
            score = (2 * tp + smooth) / ((p + m).sum(2) + smooth).clamp_min(eps)
        elif name == "jaccard":
            score = (tp + smooth) / ((p + m).sum(2) - tp + smooth).clamp_min(eps)
        else:
            fp, fn = (p * (1 - m)).sum(2), ((1 - p) * m).sum(2)
            score = (tp + smooth) / (tp + 0.5 * fp + 0.5 * fn + smooth).clamp_min(eps)
        return (1 - score).mean()
    return None


def torch_call(name: str, tensors: dict[str, Any], options: Options) -> Any:
    """The loss in torch: the native form above, else the tests' torch oracle."""
    native = _native_beyond_torch(name, tensors, options)
    if native is not None:
        return native
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # kl_div's 'mean' warning
        return torch_module_for(name).torch_loss(name, tensors, dict(options))


# --- timing --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Row:
    loss: str
    shape: str
    size: int
    core: float  # seconds, medians
    torch: float
    core_grad: float
    torch_grad: float
    torch_1: float  # torch again with one thread (immune to a busy second core)
    torch_1_grad: float

    @property
    def ratio(self) -> float:
        return self.core / self.torch

    @property
    def grad_ratio(self) -> float:
        return self.core_grad / self.torch_grad

    @property
    def ratio_1(self) -> float:
        return self.core / self.torch_1

    @property
    def grad_ratio_1(self) -> float:
        return self.core_grad / self.torch_1_grad


def _median_times(calls: list[Callable[[], Any]], budget: float, min_reps: int = 5,
                  max_reps: int = 200) -> list[float]:
    """Median wall time of each call, run round-robin until ``budget`` seconds have passed."""
    for call in calls:
        call()  # warm-up (allocator, caches, lazy imports)
    samples: list[list[float]] = [[] for _ in calls]
    start = time.perf_counter()
    while len(samples[0]) < max_reps and (len(samples[0]) < min_reps
                                           or time.perf_counter() - start < budget):
        for call, out in zip(calls, samples):
            t0 = time.perf_counter()
            call()
            out.append(time.perf_counter() - t0)
    return [statistics.median(s) for s in samples]


def measure(name: str, size: int, dtype: str, budget: float) -> Row:
    import torch

    rng = np.random.default_rng(0)
    arrays, extra = FACTORIES[name](rng, size, dtype)
    options = {"reduction": "mean", **extra}
    spec = REGISTRY[name]
    plain = {k: torch.from_numpy(v) for k, v in arrays.items()}
    leaves = {k: torch.from_numpy(v.copy()).requires_grad_(
                  spec.tensor_map[k].differentiable and v.dtype.kind == "f")
              for k, v in arrays.items()}
    wanted = [t for t in leaves.values() if t.requires_grad]

    def core() -> Any:
        return compute(name, arrays, options)

    def core_grad() -> Any:
        return compute(name, arrays, options, grad=True)

    def torch_loss() -> Any:
        with torch.no_grad():
            return torch_call(name, plain, options)

    def torch_grad() -> Any:
        out = torch_call(name, leaves, options)
        return torch.autograd.grad(out, wanted)

    medians = _median_times([core, torch_loss, core_grad, torch_grad], budget)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = _median_times([torch_loss, torch_grad], budget / 2)
    finally:
        torch.set_num_threads(threads)
    main = arrays[spec.tensors[0].name]
    return Row(name, "x".join(map(str, main.shape)), main.size, *medians, *single)


# --- report --------------------------------------------------------------------------------------

def geomean(values: list[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values))


def _ms(seconds: float) -> str:
    ms = seconds * 1e3
    return f"{ms:.3f}" if ms < 1 else f"{ms:.2f}" if ms < 100 else f"{ms:.0f}"


def _size_label(size: int) -> str:
    return f"1e{round(math.log10(size))}"


def table(rows: list[Row], size: int) -> str:
    """One markdown table for one nominal size, with the geometric mean of the ratios."""
    lines = [f"#### About {_size_label(size)} elements",
             "",
             "| loss | main input | core ms | torch ms | core/torch | core+grad ms | "
             "torch f+b ms | core/torch (grad) | vs torch 1 thread (loss, grad) |",
             "|---|---|--:|--:|--:|--:|--:|--:|--:|"]
    for r in rows:
        lines.append(f"| {r.loss} | {r.shape} | {_ms(r.core)} | {_ms(r.torch)} | "
                     f"{r.ratio:.2f} | {_ms(r.core_grad)} | {_ms(r.torch_grad)} | "
                     f"{r.grad_ratio:.2f} | {r.ratio_1:.2f}, {r.grad_ratio_1:.2f} |")
    means = [geomean([getattr(r, key) for r in rows])
             for key in ("ratio", "grad_ratio", "ratio_1", "grad_ratio_1")]
    lines.append(f"| **geometric mean** | | | | **{means[0]:.2f}** | | | **{means[1]:.2f}** | "
                 f"**{means[2]:.2f}, {means[3]:.2f}** |")
    for key, what in (("ratio", "loss"), ("grad_ratio", "loss+grad"),
                      ("ratio_1", "loss, vs torch 1 thread"),
                      ("grad_ratio_1", "loss+grad, vs torch 1 thread")):
        over = sorted((r for r in rows if getattr(r, key) > 1),
                      key=lambda r: -getattr(r, key))
        listed = ", ".join(f"{r.loss} {getattr(r, key):.2f}" for r in over) or "none"
        lines.append(f"{'' if key != 'ratio' else chr(10)}Above 1x ({what}): {listed}.  ")
    return "\n".join(lines).rstrip() + "\n"


def section(results: dict[int, list[Row]], command: str, dtype: str, threads: int,
            load: tuple[float, float], notes: str) -> str:
    import torch

    date = datetime.date.today().isoformat()
    head = [HEADING, "",
            f"Command: `{command}` (run on {date}; {platform.machine()}, "
            f"{os.cpu_count()} cores; NumPy {np.__version__}, torch {torch.__version__} "
            f"with its default {threads} threads; dtype {dtype}; 1-minute load average "
            f"{load[0]:.1f} before and {load[1]:.1f} after the run).",
            "",
            "Median wall time per call of the core (`lossd.losses.compute`: validation, "
            "loss, reduction mean) and of torch CPU on the same arrays; the grad columns are "
            "`compute(..., grad=True)` against torch forward + `torch.autograd.grad` over the "
            "same differentiable tensors, torch with its default threads; the last column "
            "divides by torch pinned to one thread (`torch.set_num_threads(1)`, timed right "
            "after), which a busy second core cannot stall. core/torch < 1 means the core is "
            "faster; the geometric mean is over all losses. On a shared machine torch's "
            "multi-threaded medians include stalls (a parallel op waits for its second thread "
            "while another process holds that core), so read both ratio columns. Inputs come "
            "from the per-loss factories in "
            "`bench/core.py` (class-scored losses (N, 10), embeddings (N, 64), boxes (N, 4), "
            "segmentation (N, 4, H, W), CTC (T, N, 20), elementwise losses (N, 100)).",
            ""]
    if notes:
        head += [notes, ""]
    body = "\n\n".join(table(rows, size) for size, rows in results.items())
    return "\n".join(head) + body + "\n"


def write_section(text: str, path: Path = DOC) -> None:
    """Replace (or append) this benchmark's section of ``path``; other sections are kept."""
    path.parent.mkdir(parents=True, exist_ok=True)
    old = path.read_text() if path.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"^{re.escape(HEADING)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(old):
        new = pattern.sub(lambda _: text + "\n", old, count=1)
    else:
        new = old.rstrip("\n") + "\n\n" + text
    path.write_text(new.rstrip("\n") + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)),
                        help="comma-separated element counts of the main input")
    parser.add_argument("--losses", default="", help="comma-separated subset (default: all)")
    parser.add_argument("--budget", type=float, default=0.5,
                        help="seconds of round-robin timing per loss and size")
    parser.add_argument("--notes", default="", help="text placed under the heading")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    import torch

    sizes = [int(float(s)) for s in args.sizes.split(",")]
    names = [n for n in REGISTRY if not args.losses or n in args.losses.split(",")]
    missing = [n for n in names if n not in FACTORIES]
    if missing:
        parser.error(f"no input factory for {', '.join(missing)}")
    threads = torch.get_num_threads()
    load_before = os.getloadavg()[0]
    results: dict[int, list[Row]] = {}
    for size in sizes:
        results[size] = []
        measure(names[0], size, args.dtype, 0.2)  # warm-up: the process's first big arrays
        for name in names:
            row = measure(name, size, args.dtype, args.budget)
            results[size].append(row)
            print(f"{_size_label(size)} {name:32s} {row.shape:>14s}  "
                  f"loss {row.core / row.torch:5.2f}x  grad {row.core_grad / row.torch_grad:5.2f}x",
                  file=sys.stderr, flush=True)
    given = sys.argv[1:] if argv is None else argv
    command = " ".join([".venv/bin/python -m bench.core", *given]) if given else "make bench-core"
    text = section(results, command, args.dtype, threads, (load_before, os.getloadavg()[0]),
                   args.notes)
    print(text)
    if not args.no_write:
        write_section(text)
        RESULTS.parent.mkdir(exist_ok=True)
        RESULTS.write_text(json.dumps({"dtype": args.dtype, "rows": [
            dataclasses.asdict(row) for rows in results.values() for row in rows]}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
