"""CTC against references that share nothing with the core's recursions: brute force over every
alignment for tiny T and C, the collapse rule written out, and central differences through a
log_softmax (the gradient torch reports is the logits' one)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from lossd.losses import compute
from tests.reference import Rand
from tests.reference.sequence import Batch, log_softmax


def collapse(path: tuple[int, ...], blank: int) -> tuple[int, ...]:
    """B(π): merge repeated symbols, then drop blanks."""
    merged = [c for i, c in enumerate(path) if i == 0 or c != path[i - 1]]
    return tuple(c for c in merged if c != blank)


def brute_force_ctc(log_probs: np.ndarray, target: tuple[int, ...], steps: int,
                    blank: int) -> float:
    """-log Σ_{π: B(π) = target} Π_t p[t, π_t] over all C^steps paths (float64)."""
    scores = [sum(log_probs[t, c] for t, c in enumerate(path))
              for path in itertools.product(range(log_probs.shape[1]), repeat=steps)
              if collapse(path, blank) == target]
    return -float(np.logaddexp.reduce(scores)) if scores else float("inf")


def ctc(inputs: dict[str, np.ndarray], grad: bool = False, **options):
    return compute("ctc", inputs, {"reduction": "none", **options}, grad=grad)


TINY = [  # (T, C, target, input_length, blank)
    (4, 3, (1, 2), 4, 0),
    (5, 3, (1, 1), 5, 0),  # repeat: needs a blank in between
    (3, 3, (1, 1), 3, 0),  # exactly enough steps
    (2, 3, (1, 1), 2, 0),  # infeasible: inf
    (5, 3, (), 5, 0),  # empty target: all blanks
    (5, 4, (3, 1, 3), 4, 0),  # input shorter than T
    (5, 3, (0, 1), 5, 2),  # non-default blank
    (6, 3, (2, 2, 0), 6, 1),
    (1, 2, (1,), 1, 0),
]


@pytest.mark.parametrize("steps, classes, target, length, blank", TINY)
@pytest.mark.parametrize("seed", [0, 1])
def test_loss_equals_brute_force(steps, classes, target, length, blank, seed) -> None:
    log_probs = log_softmax(Rand(seed).normal((steps, classes), scale=1.5))
    expected = brute_force_ctc(log_probs, target, length, blank)
    got = ctc({"log_probs": log_probs, "targets": np.array(target, np.int64),
               "input_lengths": np.array(length), "target_lengths": np.array(len(target))},
              blank=blank).loss
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_unnormalised_log_probs_equal_brute_force() -> None:
    log_probs = Rand(3).normal((5, 3))  # not normalised: the loss may be negative
    got = ctc({"log_probs": log_probs, "targets": np.array([1, 2]),
               "input_lengths": np.array(5), "target_lengths": np.array(2)}).loss
    np.testing.assert_allclose(got, brute_force_ctc(log_probs, (1, 2), 5, 0), rtol=1e-12)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_padded_concatenated_and_unbatched_agree(dtype, reduction) -> None:
    b = Batch(Rand(5), 9, 4, 5, 4, dtype=dtype, pad=-7)
    padded = compute("ctc", b.padded_inputs(), {"reduction": reduction}, grad=True)
    concatenated = compute("ctc", b.concatenated_inputs(), {"reduction": reduction}, grad=True)
    np.testing.assert_array_equal(padded.loss, concatenated.loss)
    np.testing.assert_array_equal(padded.grads["log_probs"], concatenated.grads["log_probs"])
    alone = ctc(b.unbatched_inputs(), grad=True)
    np.testing.assert_allclose(alone.loss, ctc(b.padded_inputs()).loss[0], rtol=1e-6)
    batched_grad = ctc(b.padded_inputs(), grad=True).grads["log_probs"][:, 0]
    np.testing.assert_allclose(alone.grads["log_probs"], batched_grad, rtol=1e-6, atol=1e-7)


def test_mean_divides_each_sequence_by_its_target_length() -> None:
    b = Batch(Rand(6), 8, 4, 4, 3)
    b.target_lengths[1] = 0
    per_sample = ctc(b.padded_inputs()).loss
    mean = compute("ctc", b.padded_inputs(), {"reduction": "mean"}).loss
    np.testing.assert_allclose(mean, np.mean(per_sample / np.maximum(b.target_lengths, 1)))


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_gradient_is_the_logits_gradient_through_log_softmax(reduction) -> None:
    """torch's d/d log_probs is exp(log_probs) - posterior: the derivative of the loss with
    respect to logits z where log_probs = log_softmax(z). Check it by central differences in z."""
    r = Rand(7)
    b = Batch(r, 6, 3, 4, 2)
    b.input_lengths[1] = 4  # the rows past an input length get zero gradient
    logits = r.normal(b.log_probs.shape)
    inputs = {**b.padded_inputs(), "log_probs": log_softmax(logits)}
    options = {"reduction": reduction}
    grad = compute("ctc", inputs, options, grad=True).grads["log_probs"]

    def total(z: np.ndarray) -> float:
        return float(np.sum(compute("ctc", {**inputs, "log_probs": log_softmax(z)},
                                    options).loss))

    numeric = np.zeros_like(logits)
    eps = 1e-6
    for index in np.ndindex(logits.shape):
        plus, minus = logits.copy(), logits.copy()
        plus[index] += eps
        minus[index] -= eps
        numeric[index] = (total(plus) - total(minus)) / (2 * eps)
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-7)
    assert not grad[4:, 1].any()


def test_zero_infinity_zeroes_loss_and_gradient_of_impossible_samples() -> None:
    inputs = {"log_probs": log_softmax(Rand(8).normal((3, 2, 3))),
              "targets": np.array([[1, 1], [1, 2]]),
              "input_lengths": np.array([3, 3]), "target_lengths": np.array([2, 2])}
    inputs["input_lengths"][0] = 2  # "1 1" needs three steps
    plain = ctc(inputs, grad=True)
    assert plain.loss[0] == np.inf and np.isnan(plain.grads["log_probs"][:2, 0]).all()
    zeroed = ctc(inputs, grad=True, zero_infinity=True)
    assert zeroed.loss[0] == 0 and not zeroed.grads["log_probs"][:, 0].any()
    np.testing.assert_array_equal(zeroed.loss[1], plain.loss[1])
    np.testing.assert_array_equal(zeroed.grads["log_probs"][:, 1], plain.grads["log_probs"][:, 1])


def test_no_warnings_on_large_batches() -> None:
    """The size the service is tuned for runs (warnings are errors in pytest)."""
    b = Batch(Rand(9), 100, 100, 100, 20, dtype="float32")
    result = compute("ctc", b.padded_inputs(), {}, grad=True)
    assert np.isfinite(result.loss) and np.isfinite(result.grads["log_probs"]).all()
