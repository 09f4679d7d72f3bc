"""Sequence losses: connectionist temporal classification (CTC).

Shapes (torch's names): ``log_probs`` is ``(T, N, C)`` or unbatched ``(T, C)``; ``targets`` is
padded ``(N, S)`` (values past each target length are ignored), concatenated
``(sum(target_lengths),)``, or unbatched ``(S,)`` with ``S = target_length``;
``input_lengths`` and ``target_lengths`` are ``(N,)`` or unbatched ``()``.

The recursions run in log space over the extended label sequence
``l' = (blank, l_1, blank, l_2, ..., l_S, blank)`` of length ``L = 2S + 1``: a Python loop over
time only, each step a few whole-array operations over the batch and the ``L`` positions
(Graves et al., 2006, "Connectionist Temporal Classification", eqs. 6-16).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from ._checks import check_index_range, check_ndim, check_shape, fail, shape_str
from ._reduce import Terms
from ._spec import (
    LOG_PROBABILITY,
    Kind,
    LossSpec,
    OptionSpec,
    TensorSpec,
    Values,
    reduction_option,
    register,
)

FAMILY = "sequence"


class _Lattice(NamedTuple):
    """One batch laid out over the extended labels (``L = 2 * max(target_lengths) + 1``)."""

    log_probs: np.ndarray  # (T, N, C)
    input_lengths: np.ndarray  # (N,)
    target_lengths: np.ndarray  # (N,)
    labels: np.ndarray  # (N, L) extended labels; blank at even and unused positions
    emit: np.ndarray  # (T, N, L) log_probs at the labels; -inf past 2 * target_length
    skip: np.ndarray  # (N, L) position s may be reached from s - 2
    valid: np.ndarray  # (N, L) s <= 2 * target_length


def _batched(log_probs: np.ndarray, targets: np.ndarray, input_lengths: np.ndarray,
             target_lengths: np.ndarray, blank: int
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(log_probs (T, N, C), padded targets (N, max target length), input and target lengths
    (N,)) from any accepted form; padding holds ``blank`` so that it indexes a real class."""
    if log_probs.ndim == 2:
        log_probs, targets = log_probs[:, None], targets[None]
        input_lengths, target_lengths = input_lengths.reshape(1), target_lengths.reshape(1)
    width = int(target_lengths.max())
    column = np.arange(width)
    used = column < target_lengths[:, None]
    if targets.ndim == 1:  # concatenated: sample n's labels start after the previous ones
        starts = np.cumsum(target_lengths) - target_lengths
        targets = targets[np.minimum(starts[:, None] + column, targets.size - 1)]
    padded = np.where(used, targets[:, :width], blank)
    return log_probs, padded, input_lengths, target_lengths


def _lattice(log_probs: np.ndarray, targets: np.ndarray, input_lengths: np.ndarray,
             target_lengths: np.ndarray, blank: int) -> _Lattice:
    log_probs, padded, input_lengths, target_lengths = _batched(
        log_probs, targets, input_lengths, target_lengths, blank)
    n, width = padded.shape
    labels = np.full((n, 2 * width + 1), blank, dtype=np.int64)
    labels[:, 1::2] = padded
    position = np.arange(labels.shape[1])
    valid = position <= 2 * target_lengths[:, None]
    # torch's rule: a label position (odd s, s >= 3) may skip the blank before it unless it
    # repeats the previous label; written on parity, not on "is blank", as torch does
    skip = np.zeros_like(valid)
    skip[:, 3::2] = labels[:, 3::2] != labels[:, 1:-2:2]
    gathered = np.take_along_axis(log_probs, labels[None], axis=2)
    emit = np.where(valid, gathered, log_probs.dtype.type(-np.inf))
    return _Lattice(log_probs, input_lengths, target_lengths, labels, emit, skip, valid)


def _logsumexp(*terms: np.ndarray) -> np.ndarray:
    """``log Σ exp(terms)`` elementwise, shifted by the max exactly as torch's CTC kernel does.

    Stable for large negative terms; a max of -inf shifts by 0 (so all -inf gives -inf), and a
    +inf term gives exp(inf - inf) = nan as in torch, where np.logaddexp would keep inf. Plain
    exp/log also vectorise far better than np.logaddexp (3-9x here).
    """
    top = np.maximum(terms[0], terms[1])
    for term in terms[2:]:
        np.maximum(top, term, out=top)
    top[top == -np.inf] = 0
    total: np.ndarray = np.exp(terms[0] - top)
    for term in terms[1:]:
        total += np.exp(term - top)
    np.log(total, out=total)
    total += top
    return total


def _alpha(lattice: _Lattice) -> np.ndarray:
    """Forward variables ``log α[t, n, s]``, shape (T, N, L); rows past an input length are
    computed but never read."""
    emit, skip = lattice.emit, lattice.skip
    steps, n, width = emit.shape
    neg_inf = emit.dtype.type(-np.inf)
    # two leading -inf columns stand for s - 1 and s - 2 before the start
    alpha = np.full((steps, n, width + 2), neg_inf, dtype=emit.dtype)
    alpha[0, :, 2:4] = emit[0, :, :2]  # start in the first blank or the first label
    for t in range(1, steps):
        previous = alpha[t - 1]
        np.add(_logsumexp(previous[:, 2:], previous[:, 1:-1],
                          np.where(skip, previous[:, :-2], neg_inf)), emit[t],
               out=alpha[t, :, 2:])
    return alpha[:, :, 2:]


def _beta(lattice: _Lattice) -> np.ndarray:
    """Backward variables ``log β[t, n, s]`` (emission at t included, as torch keeps them),
    shape (T, N, L); each sample starts at ``t = input_length - 1`` in the last blank or the
    last label, and rows after it are never read."""
    emit, skip, valid = lattice.emit, lattice.skip, lattice.valid
    steps, n, width = emit.shape
    neg_inf = emit.dtype.type(-np.inf)
    last = lattice.input_lengths - 1
    ends = valid & (np.arange(width) >= 2 * lattice.target_lengths[:, None] - 1)
    skip_ahead = np.zeros_like(skip)  # s may be left for s + 2
    skip_ahead[:, :-2] = skip[:, 2:]
    # two trailing -inf columns stand for s + 1 and s + 2 past the end, one extra row for T
    beta = np.full((steps + 1, n, width + 2), neg_inf, dtype=emit.dtype)
    for t in range(steps - 1, -1, -1):
        following = beta[t + 1]
        current = _logsumexp(following[:, :width], following[:, 1:-1],
                             np.where(skip_ahead, following[:, 2:], neg_inf))
        current += emit[t]
        starts = (last == t)[:, None]
        beta[t, :, :width] = np.where(starts, np.where(ends, emit[t], neg_inf), current)
    return beta[:steps, :, :width]


def _negative_log_likelihood(lattice: _Lattice, alpha: np.ndarray) -> np.ndarray:
    """``-log(α[T_n-1, 2S_n] + α[T_n-1, 2S_n-1])`` per sample, shape (N,); with no input
    steps torch gives -0.0 for an empty target and inf otherwise."""
    input_lengths, target_lengths = lattice.input_lengths, lattice.target_lengths
    final = alpha[np.maximum(input_lengths - 1, 0), np.arange(alpha.shape[1])]
    end = 2 * target_lengths
    blank_end = np.take_along_axis(final, end[:, None], axis=1)[:, 0]
    label_end = np.take_along_axis(final, np.maximum(end - 1, 0)[:, None], axis=1)[:, 0]
    neg_inf = alpha.dtype.type(-np.inf)
    # torch reads the final blank alone for an empty target (a +inf there stays +inf)
    likelihood = np.where(target_lengths > 0, _logsumexp(blank_end, label_end), blank_end)
    no_steps = np.where(target_lengths == 0, alpha.dtype.type(0), neg_inf)
    return -np.where(input_lengths == 0, no_steps, likelihood)


def ctc_loss(log_probs: np.ndarray, targets: np.ndarray, input_lengths: np.ndarray,
             target_lengths: np.ndarray, *, blank: int = 0, zero_infinity: bool = False
             ) -> Terms:
    """Connectionist temporal classification loss (torch.nn.CTCLoss).

    ``loss_n = -log Σ_{π ∈ B⁻¹(y_n)} Π_{t < T_n} exp(log_probs[t, n, π_t])``: the alignments
    π of length ``T_n = input_lengths[n]`` that collapse (merge repeats, drop blanks) to the
    target. ``mean`` is ``mean_n(loss_n / max(target_length_n, 1))`` (per-sample ``scale``).

    Edge cases as torch: an alignment that cannot exist (``T_n`` shorter than the target plus
    its repeats) gives ``inf``, or 0 with ``zero_infinity``; an empty target gives
    ``-Σ_t log_probs[t, n, blank]``; log_probs are not required to be normalised.

    Args:
        log_probs: (T, N, C) or (T, C).
        targets: (N, S) padded, (Σ target_lengths,) concatenated, or (S,) unbatched.
        input_lengths: (N,) or ().
        target_lengths: (N,) or ().
        blank: index of the blank class, in [0, C).
        zero_infinity: impossible alignments give 0 (and a zero gradient) instead of inf.

    Returns:
        Terms with values (N,) or (), scale ``1 / max(target_lengths, 1)``.

    Example:
        Alignments "1 1", "0 1" and "1 0" collapse to the target "1": ``-log 0.75``.

        >>> ctc_loss(np.log(np.full((2, 2), 0.5)), np.array([1]), np.array(2),
        ...          np.array(1)).values
        array(0.2877)
    """
    lattice = _lattice(log_probs, targets, input_lengths, target_lengths, blank)
    values = _negative_log_likelihood(lattice, _alpha(lattice))
    if zero_infinity:
        values = np.where(values == np.inf, values.dtype.type(0), values)
    scale = 1 / np.maximum(lattice.target_lengths, 1).astype(values.dtype)
    shape = np.shape(input_lengths)  # () unbatched
    return Terms(values.reshape(shape), scale=scale.reshape(shape))


def ctc_loss_grad(upstream: np.ndarray, log_probs: np.ndarray, targets: np.ndarray,
                  input_lengths: np.ndarray, target_lengths: np.ndarray, *, blank: int = 0,
                  zero_infinity: bool = False) -> dict[str, np.ndarray]:
    """torch's CTC gradient: ``(exp(log_probs) - γ) · upstream`` for ``t < input_length``, 0
    after.

    ``γ[t, n, c] = Σ_{s: l'_s = c} α β / (p · likelihood)`` is the posterior of class c at
    time t. This is the gradient with respect to the logits of a log_softmax, not the
    derivative with respect to ``log_probs`` (which is ``-γ``): torch's convention, kept.
    Where torch's ``exp(log Σ αβ + nll - log p)`` is undefined (loss inf or nan, log_probs
    -inf or nan) the gradient is nan; with ``zero_infinity`` an infinite loss has gradient 0.
    At ``t = input_length - 1`` torch counts only the last label and the final blank, and the
    label overwrites the blank when the last target equals blank (undefined input); kept too.
    """
    lattice = _lattice(log_probs, targets, input_lengths, target_lengths, blank)
    alpha, beta = _alpha(lattice), _beta(lattice)
    nll = _negative_log_likelihood(lattice, alpha)
    steps, n, width = lattice.emit.shape
    classes = lattice.log_probs.shape[2]
    time = np.arange(steps)[:, None, None]
    last = (lattice.input_lengths - 1)[None, :, None]
    end = 2 * lattice.target_lengths[:, None]
    position = np.arange(width)
    label_end = position == end - 1
    last_label = np.take_along_axis(lattice.labels, np.maximum(end - 1, 0), axis=1)
    overwritten = (end > 0) & (last_label == blank)
    blank_end = (position == end) & ~overwritten
    counted = lattice.valid & ((time < last) | ((time == last) & (label_end | blank_end)))
    # posterior per position: α β / p / likelihood (α and β both include the emission p)
    share = np.exp(alpha + beta + nll[None, :, None] - lattice.emit)
    share = np.where(counted, share, share.dtype.type(0))
    bins = (time * n + np.arange(n)[None, :, None]) * classes + lattice.labels[None]
    posterior = np.bincount(bins.ravel(), weights=share.ravel(), minlength=steps * n * classes)
    lp = lattice.log_probs
    grad = np.exp(lp) - posterior.reshape(lp.shape).astype(lp.dtype)
    undefined = ~(nll < np.inf)[None, :, None] | ~(lp > -np.inf)
    grad = np.where(undefined, lp.dtype.type(np.nan), grad)
    grad *= upstream.reshape(1, -1, 1).astype(lp.dtype, copy=False)
    keep = time < lattice.input_lengths[None, :, None]
    if zero_infinity:
        keep = keep & (nll != np.inf)[None, :, None]
    grad = np.where(keep, grad, lp.dtype.type(0))
    return {"log_probs": grad.reshape(log_probs.shape)}


def _check_ctc(arrays: dict[str, np.ndarray], options: dict[str, Any]) -> None:
    """torch's checks (ctc_loss_allocate_outputs), plus target values in [0, C) which torch's
    CPU kernel does not check (it reads out of bounds)."""
    log_probs, targets = arrays["log_probs"], arrays["targets"]
    input_lengths, target_lengths = arrays["input_lengths"], arrays["target_lengths"]
    check_ndim("log_probs", log_probs, (3, 2), "(T, N, C) or unbatched (T, C)")
    if log_probs.size == 0:
        raise fail("log_probs", f"must not be empty; got shape {shape_str(log_probs.shape)}")
    batched = log_probs.ndim == 3
    steps, classes = log_probs.shape[0], log_probs.shape[-1]
    blank = options["blank"]
    if blank >= classes:
        raise fail("blank", f"must be a class of log_probs: expected a value in "
                            f"[0, {classes - 1}]; got {blank}", option=True)
    lengths_shape = (log_probs.shape[1],) if batched else ()
    why = f"log_probs {shape_str(log_probs.shape)}"
    check_shape("input_lengths", input_lengths, lengths_shape, why)
    check_shape("target_lengths", target_lengths, lengths_shape, why)
    _check_lengths("input_lengths", input_lengths, steps, "T, the length of log_probs")
    target_lengths = target_lengths.astype(np.int64)
    if target_lengths.size and target_lengths.min() < 0:
        raise fail("target_lengths", f"expected values >= 0; got {int(target_lengths.min())}")
    if batched and targets.ndim == 2:
        check_shape("targets", targets, (log_probs.shape[1], targets.shape[1]),
                    f"log_probs {shape_str(log_probs.shape)} (padded (N, S) form)")
        _check_lengths("target_lengths", target_lengths, targets.shape[1],
                       "S, the width of the padded targets")
        used = targets[np.arange(targets.shape[1]) < target_lengths[:, None]]
    elif targets.ndim == 1:
        total = int(target_lengths.sum())
        form = "the sum of target_lengths" if batched else "target_lengths"
        check_shape("targets", targets, (total,), f"{form} = {total}")
        used = targets
    else:
        pattern = "(N, S) padded or (sum(target_lengths),) concatenated" if batched else "(S,)"
        check_ndim("targets", targets, (2, 1) if batched else (1,), pattern)
        return
    check_index_range("targets", used, 0, classes)


def _check_lengths(name: str, lengths: np.ndarray, limit: int, what: str) -> None:
    if lengths.size == 0:
        return
    smallest, largest = int(lengths.min()), int(lengths.max())
    if smallest < 0 or largest > limit:
        raise fail(name, f"expected values in [0, {limit}] ({what}); "
                         f"got {smallest if smallest < 0 else largest}")


register(LossSpec(
    "ctc", ctc_loss,
    (TensorSpec("log_probs", "input", "(T, N, C) or (T, C)", dtypes=("float32", "float64"),
                differentiable=True, batch_axis=1, batch_ndim=3,
                description="log-probabilities over C classes (blank included) per time step",
                dims=(("T", "N", "C"), ("T", "C")), values=LOG_PROBABILITY),
     TensorSpec("targets", "target",
                "(N, S) padded, (sum(target_lengths),) concatenated, or (S,) unbatched",
                kind=Kind.INDEX, batch_axis=0, batch_ndim=2,
                description="target label sequences, classes other than the blank; padding "
                            "past a target length is ignored",
                dims=(("N", "S"), ("S",)), values=Values(1, "C", high_open=True, integer=True)),
     TensorSpec("input_lengths", "lengths", "(N,) or ()", kind=Kind.INDEX,
                batch_axis=0, batch_ndim=1,
                description="number of time steps used per sample, each <= T",
                dims=(("N",), ()), values=Values(1, "T", integer=True)),
     TensorSpec("target_lengths", "lengths", "(N,) or ()", kind=Kind.INDEX,
                batch_axis=0, batch_ndim=1,
                description="target length per sample (<= S in the padded form)",
                dims=(("N",), ()), values=Values(0, "S", integer=True))),
    (reduction_option(),
     OptionSpec("blank", int, 0, "class index of the blank label", minimum=0),
     OptionSpec("zero_infinity", bool, False,
                "replace infinite losses (impossible alignments) and their gradients by 0")),
    torch="torch.nn.functional.ctc_loss", family=FAMILY, check=_check_ctc, grad=ctc_loss_grad,
))
