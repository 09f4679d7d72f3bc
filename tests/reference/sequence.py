"""Cases and torch oracle for service/lossd/losses/sequence.py (CTC)."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import Case, Rand

REDUCTIONS = ["none", "mean", "sum"]
# torch's float32 CTC gradient is itself off the exact value by up to ~7e-6
F32_GRAD = {"grad_rtol": 1e-4, "grad_atol": 1e-5}


def torch_loss(name: str, t: dict[str, Any], options: dict[str, Any]):
    import torch.nn.functional as F

    if name != "ctc":
        raise KeyError(name)
    return F.ctc_loss(t["log_probs"], t["targets"], t["input_lengths"], t["target_lengths"],
                      blank=options.get("blank", 0),
                      reduction=options.get("reduction", "mean"),
                      zero_infinity=options.get("zero_infinity", False))


def log_softmax(x: np.ndarray) -> np.ndarray:
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


class Batch:
    """A random feasible CTC batch: T steps, N samples, C classes, targets padded to S."""

    def __init__(self, r: Rand, steps: int, n: int, classes: int, width: int, *,
                 blank: int = 0, dtype: str = "float64", pad: int = -1) -> None:
        self.log_probs = log_softmax(r.normal((steps, n, classes), scale=2.0)).astype(dtype)
        labels = r.integers(0, classes - 1, (n, width))
        labels[labels >= blank] += 1  # every label but the blank
        self.target_lengths = r.integers(0, width + 1, (n,))
        self.target_lengths[0] = width  # the longest one always present
        # a target of length S with repeats needs at most 2S steps; keep every sample feasible
        self.input_lengths = r.integers(min(2 * width, steps), steps + 1, (n,))
        self.input_lengths[-1] = steps
        self.padded = np.where(np.arange(width) < self.target_lengths[:, None], labels, pad)

    def padded_inputs(self) -> dict[str, np.ndarray]:
        return {"log_probs": self.log_probs, "targets": self.padded,
                "input_lengths": self.input_lengths, "target_lengths": self.target_lengths}

    def concatenated_inputs(self) -> dict[str, np.ndarray]:
        used = np.arange(self.padded.shape[1]) < self.target_lengths[:, None]
        return {**self.padded_inputs(), "targets": self.padded[used]}

    def unbatched_inputs(self) -> dict[str, np.ndarray]:
        """Sample 0 without its batch dimension."""
        return {"log_probs": self.log_probs[:, 0],
                "targets": self.padded[0, :self.target_lengths[0]],
                "input_lengths": self.input_lengths[0], "target_lengths": self.target_lengths[0]}


def _f32(dtype: str) -> dict[str, float]:
    return F32_GRAD if dtype == "float32" else {}


def cases(seed: int) -> list[Case]:
    r = Rand(seed)
    out: list[Case] = []
    # torch's gradient is that of a log_softmax's logits, not d loss / d log_probs: no central
    # differences against log_probs here (tests/losses/test_sequence.py checks it via logits)
    grid = [{}, {"blank": 2}, {"zero_infinity": True}]
    for opts in grid:
        for dtype in ("float64", "float32"):
            for reduction in REDUCTIONS:
                o = {**opts, "reduction": reduction}
                tag = "-".join(f"{k}={v}" for k, v in opts.items()) or "default"
                b = Batch(r, 7, 3, 4, 3, blank=opts.get("blank", 0), dtype=dtype)
                if opts.get("zero_infinity"):
                    b.input_lengths[0] = 2  # sample 0 (3 labels) cannot be aligned: loss 0
                for form, inputs in (("padded", b.padded_inputs()),
                                     ("concatenated", b.concatenated_inputs()),
                                     ("unbatched", b.unbatched_inputs())):
                    out.append(Case(f"{tag}-{form}-{dtype}-{reduction}", "ctc", inputs, o,
                                    finite_diff=False, **_f32(dtype)))

    # lengths given as int32, and padding values that are not classes (ignored by torch)
    b = Batch(r, 6, 3, 5, 2, pad=99)
    out.append(Case("int32-lengths-odd-padding", "ctc",
                    {**b.padded_inputs(), "targets": b.padded.astype("int32"),
                     "input_lengths": b.input_lengths.astype("int32"),
                     "target_lengths": b.target_lengths.astype("int32")},
                    {"reduction": "none"}, finite_diff=False))
    # repeated labels need a blank between them: T = 2S - 1 is just enough for "1 1 2"
    lp = log_softmax(r.normal((5, 2, 3)))
    out.append(Case("repeats-tight", "ctc",
                    {"log_probs": lp, "targets": np.array([[1, 1, 2], [2, 2, 2]]),
                     "input_lengths": np.array([4, 5]), "target_lengths": np.array([3, 3])},
                    {"reduction": "none"}, finite_diff=False))
    # impossible alignments: inf (nan gradient); zero_infinity: 0 (zero gradient)
    infeasible = {"log_probs": log_softmax(r.normal((4, 3, 3))),
                  "targets": np.array([[1, 1, 1], [1, 2, 0], [2, 2, 0]]),
                  "input_lengths": np.array([4, 4, 3]), "target_lengths": np.array([3, 2, 2])}
    for reduction in REDUCTIONS:
        for zero_infinity in (False, True):
            out.append(Case(f"infeasible-zero_infinity={zero_infinity}-{reduction}", "ctc",
                            infeasible, {"reduction": reduction, "zero_infinity": zero_infinity},
                            finite_diff=False))
    # empty targets (loss = -Σ log p_blank), zero input lengths (-0.0 or inf, zero gradient)
    lp = log_softmax(r.normal((4, 3, 3)))
    for reduction in REDUCTIONS:
        out.append(Case(f"empty-targets-{reduction}", "ctc",
                        {"log_probs": lp, "targets": np.zeros((3, 0), np.int64),
                         "input_lengths": np.array([4, 2, 3]),
                         "target_lengths": np.zeros(3, np.int64)},
                        {"reduction": reduction}, finite_diff=False))
        out.append(Case(f"zero-input-length-{reduction}", "ctc",
                        {"log_probs": lp, "targets": np.array([[1], [2], [1]]),
                         "input_lengths": np.array([0, 0, 4]),
                         "target_lengths": np.array([0, 1, 1])},
                        {"reduction": reduction}, finite_diff=False))
    out.append(Case("empty-concatenated-targets", "ctc",
                    {"log_probs": lp, "targets": np.zeros(0, np.int64),
                     "input_lengths": np.array([4, 2, 3]),
                     "target_lengths": np.zeros(3, np.int64)}, {}, finite_diff=False))
    # log_probs need not be normalised (negative losses); float32 with longer sequences
    out.append(Case("unnormalised", "ctc", {**Batch(r, 6, 2, 4, 2).padded_inputs(),
                                            "log_probs": r.normal((6, 2, 4), scale=0.5)},
                    {"reduction": "none"}, finite_diff=False))
    b = Batch(r, 30, 4, 6, 8, dtype="float32")
    out.append(Case("long-float32", "ctc", b.padded_inputs(), {"reduction": "mean"},
                    finite_diff=False, **F32_GRAD))
    # a target equal to blank is undefined in torch but computed; its quirks are reproduced
    out.append(Case("target-is-blank", "ctc",
                    {"log_probs": log_softmax(r.normal((6, 3, 4))),
                     "targets": np.array([[1, 0, 2], [3, 0, 0], [0, 0, 0]]),
                     "input_lengths": np.array([6, 5, 6]), "target_lengths": np.array([3, 2, 1])},
                    {"reduction": "none"}, finite_diff=False))
    # nan and -inf log_probs: nan loss where a used class is nan; nan gradients where torch's
    # exp(log Σαβ + nll - log p) is undefined; nothing past the input length counts
    # (+inf: an inf gradient at an unused class, a nan loss at a used one, as torch)
    lp = log_softmax(r.normal((5, 4, 4)))
    lp[1, 0, 3] = -np.inf
    lp[2, 1, 1] = np.nan
    lp[4, 2, 1] = np.nan
    lp[2, 2, 3] = np.inf
    lp[1, 3, 2] = np.inf
    out.append(Case("nan-inf", "ctc",
                    {"log_probs": lp, "targets": np.array([[1, 2], [1, 2], [1, 2], [1, 2]]),
                     "input_lengths": np.array([5, 5, 4, 5]),
                     "target_lengths": np.array([2, 2, 2, 2])},
                    {"reduction": "none"}, finite_diff=False))

    # --- invalid calls --------------------------------------------------------------------
    good = Batch(r, 6, 2, 4, 3).padded_inputs()

    def bad(case_id: str, error: str, options: dict[str, Any] | None = None,
            torch_accepts: bool = False, **changes: np.ndarray) -> None:
        out.append(Case(case_id, "ctc", {**good, **changes}, options or {}, error=error,
                        torch_accepts=torch_accepts))

    bad("float16", "log_probs: dtype float16 is not accepted",
        log_probs=good["log_probs"].astype("float16"))  # torch: not implemented for 'Half'
    bad("int-log-probs", "log_probs: dtype int64 is not accepted",
        log_probs=np.zeros((6, 2, 4), np.int64))
    bad("log-probs-1d", r"log_probs: expected \(T, N, C\) or unbatched \(T, C\) \(3-D or 2-D\)",
        log_probs=good["log_probs"][:, 0, 0])
    bad("log-probs-4d", r"log_probs: expected .* got 4-D", log_probs=good["log_probs"][None])
    bad("empty-batch", r"log_probs: must not be empty; got shape \(6, 0, 4\)",
        log_probs=good["log_probs"][:, :0], targets=good["targets"][:0],
        input_lengths=good["input_lengths"][:0], target_lengths=good["target_lengths"][:0])
    bad("empty-time", r"log_probs: must not be empty; got shape \(0, 2, 4\)",
        log_probs=good["log_probs"][:0], input_lengths=np.array([0, 0]))
    bad("blank-equals-C", r"blank: must be a class of log_probs: expected a value in \[0, 3\]; "
        r"got 4", {"blank": 4})
    bad("blank-negative", r"blank: expected a value >= 0; got -1", {"blank": -1})
    bad("input-length-over-T", r"input_lengths: expected values in \[0, 6\] .*; got 7",
        input_lengths=np.array([7, 6]))
    bad("input-length-negative", r"input_lengths: expected values in \[0, 6\] .*; got -1",
        input_lengths=np.array([-1, 6]))
    bad("target-length-over-S", r"target_lengths: expected values in \[0, 3\] .*; got 4",
        target_lengths=np.array([4, 1]))
    bad("target-length-negative", r"target_lengths: expected values >= 0; got -1",
        target_lengths=np.array([3, -1]))
    bad("input-lengths-size", r"input_lengths: must have shape \(2,\) to match log_probs "
        r"\(6, 2, 4\); got \(3,\)", input_lengths=np.array([6, 6, 6]))
    bad("target-lengths-size", r"target_lengths: must have shape \(2,\) .*; got \(1,\)",
        target_lengths=np.array([3]))
    bad("targets-rows", r"targets: must have shape \(2, 3\) .*; got \(1, 3\)",
        targets=good["targets"][:1])
    bad("targets-3d", r"targets: expected \(N, S\) padded or .* got 3-D",
        targets=good["targets"][:, None])
    bad("concatenated-too-short", r"targets: must have shape \(4,\) to match the sum of "
        r"target_lengths = 4; got \(3,\)", targets=np.array([1, 2, 3]),
        target_lengths=np.array([3, 1]))
    bad("concatenated-too-long", r"targets: must have shape \(4,\) .*; got \(5,\)",
        targets=np.array([1, 2, 3, 1, 2]), target_lengths=np.array([3, 1]))
    bad("float-lengths", "input_lengths: dtype float64 is not accepted",
        input_lengths=good["input_lengths"].astype("float64"))  # torch: must be integral
    # torch's CPU kernel does not range-check target values: it reads memory past the class
    # axis and returns garbage. lossd refuses them. (Sample 0's extra class is sample 1's
    # first class in memory, so torch's read stays inside the tensor.)
    bad("target-equals-C", r"targets: class index out of range: expected values in \[0, 3\]; "
        r"got 4", torch_accepts=True, targets=np.array([[1, 4, 2], [1, 2, 3]]),
        target_lengths=np.array([3, 3]))
    bad("target-negative", r"targets: class index out of range: .*; got -1", torch_accepts=True,
        targets=np.array([[1, 2, 3], [-1, 2, 3]]), target_lengths=np.array([3, 3]))
    # torch converts float targets; lossd takes class indices in an integer dtype
    bad("float-targets", "targets: dtype float64 is not accepted", torch_accepts=True,
        targets=good["targets"].astype("float64"))
    # torch takes one-element lengths of any rank for N = 1; lossd wants (N,) exactly
    one = Batch(r, 6, 1, 4, 2).padded_inputs()
    out.append(Case("batched-0d-lengths", "ctc",
                    {**one, "input_lengths": one["input_lengths"][0],
                     "target_lengths": one["target_lengths"][0]},
                    error=r"input_lengths: must have shape \(1,\)", torch_accepts=True))
    # unbatched: targets (S,) with S = target_length (torch: 0-d refused; (1, S) accepted)
    u = Batch(r, 6, 1, 4, 2).unbatched_inputs()
    out.append(Case("unbatched-0d-targets", "ctc", {**u, "targets": np.array(1),
                                                    "target_lengths": np.array(1)},
                    error=r"targets: expected \(S,\) \(1-D\); got 0-D"))
    out.append(Case("unbatched-2d-targets", "ctc", {**u, "targets": u["targets"][None]},
                    error=r"targets: expected \(S,\) \(1-D\); got 2-D", torch_accepts=True))
    out.append(Case("unbatched-targets-longer", "ctc",
                    {**u, "targets": np.array([1, 2, 3]), "target_lengths": np.array(2)},
                    error=r"targets: must have shape \(2,\) to match target_lengths = 2"))
    out.append(Case("unbatched-1d-lengths", "ctc",
                    {**u, "input_lengths": u["input_lengths"].reshape(1)},
                    error=r"input_lengths: must have shape \(\) to match log_probs \(6, 4\)",
                    torch_accepts=True))  # torch takes (1,) too
    bad("bad-reduction", "reduction: expected one of", {"reduction": "average"})
    out.append(Case("missing-target_lengths", "ctc",
                    {k: v for k, v in good.items() if k != "target_lengths"},
                    error="target_lengths: required tensor is missing"))
    return out
