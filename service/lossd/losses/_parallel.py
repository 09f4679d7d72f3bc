"""Elementwise kernels over big arrays, in cache-sized pieces spread over the machine's cores.

NumPy releases the GIL inside its ufunc loops, so a kernel run on aligned slices in a few
threads uses every core, and a multi-pass kernel whose temporaries are piece-sized keeps them in
cache. Pieces are handed out one at a time, so a core busy with another process delays a call
by at most the piece it holds, never by a fixed share of the work. The results are
bit-identical to one call on the whole arrays: elementwise work does not depend on where the
arrays are cut. Arrays under :data:`THRESHOLD` elements run inline (a thread
hand-off costs tens of microseconds), and so does anything that is not plain aligned data.

A kernel writes its results into the output arrays it is given and returns nothing::

    def _kernel(x, y, out):               # pieces of input, target and the output
        np.subtract(x, y, out=out)
        np.abs(out, out=out)

    values = elementwise(_kernel, input, target)
"""

from __future__ import annotations

import functools
import itertools
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal, overload

import numpy as np

THRESHOLD = 1 << 17  # elements; below this one inline call is faster
PIECE = 1 << 16  # elements per piece: a few float32 temporaries of it stay in L2 cache

Kernel = Callable[..., None]

_inside = threading.local()


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@functools.cache
def _pool() -> ThreadPoolExecutor | None:
    """One pool per process, created on first use, with a thread for every core but the
    caller's (which computes a share too); ``None`` on a single core."""
    cores = _cores()
    return (ThreadPoolExecutor(cores - 1, thread_name_prefix="lossd-elementwise")
            if cores > 1 else None)


class _Job:
    """The pieces of one call, handed out one at a time to whichever thread asks next.

    A thread claims a piece, computes it, and counts it done; the caller works too and then
    waits only for pieces other threads have claimed. A worker the OS has not scheduled yet
    (the other core is busy) claims nothing and delays nothing: it finds no piece left.
    """

    def __init__(self, kernel: Kernel, flat: list[np.ndarray], outs: list[np.ndarray]) -> None:
        self.kernel, self.flat, self.outs = kernel, flat, outs
        self.size = outs[0].size
        self.count = -(-self.size // PIECE)
        self.claims = itertools.count()  # next() is atomic under the GIL
        self.errors = np.geterr()  # NumPy keeps these per thread: workers use the caller's
        self.done = 0
        self.failure: BaseException | None = None
        self.finished = threading.Condition()

    def work(self) -> None:
        _inside.active = True
        try:
            with np.errstate(**self.errors):
                while (index := next(self.claims)) < self.count:
                    cut = slice(index * PIECE, min((index + 1) * PIECE, self.size))
                    try:
                        self.kernel(*(a[cut] for a in self.flat), *(o[cut] for o in self.outs))
                    except BaseException as error:  # re-raised by the caller in wait()
                        self.failure = error
                    with self.finished:
                        self.done += 1
                        if self.done == self.count:
                            self.finished.notify_all()
        finally:
            _inside.active = False

    def wait(self) -> None:
        with self.finished:
            self.finished.wait_for(lambda: self.done == self.count)
        if self.failure is not None:
            raise self.failure


@overload
def elementwise(kernel: Kernel, *arrays: np.ndarray,  # type: ignore[overload-overlap]
                outputs: Literal[1] = 1, dtype: np.dtype | None = None) -> np.ndarray: ...


@overload
def elementwise(kernel: Kernel, *arrays: np.ndarray, outputs: int,
                dtype: np.dtype | None = None) -> tuple[np.ndarray, ...]: ...


def elementwise(kernel: Kernel, *arrays: np.ndarray, outputs: int = 1,
                dtype: np.dtype | None = None) -> np.ndarray | tuple[np.ndarray, ...]:
    """``kernel(*arrays, *outs)`` run over aligned pieces; returns the output(s).

    Args:
        kernel: writes its results elementwise into its last ``outputs`` arguments, e.g. with
            ``out=`` ufuncs; it may allocate piece-sized temporaries.
        arrays: same-shaped arrays (anything else, e.g. broadcasting shapes, runs in one call,
            so the kernel must also be correct on whole, broadcastable arrays).
        outputs: how many output arrays the kernel fills.
        dtype: the outputs' dtype (default: the result type of ``arrays``).

    Returns:
        One array, or a tuple of ``outputs`` arrays, of the broadcast shape of ``arrays``.
    """
    return _run(kernel, arrays, outputs, dtype)


def _run(kernel: Kernel, arrays: tuple[np.ndarray, ...], outputs: int,
         dtype: np.dtype | None) -> np.ndarray | tuple[np.ndarray, ...]:
    shape = np.broadcast_shapes(*(a.shape for a in arrays))
    out_dtype = np.result_type(*arrays) if dtype is None else dtype
    outs = [np.empty(shape, out_dtype) for _ in range(outputs)]
    size = outs[0].size
    pool = _pool()
    aligned = all(a.shape == shape and a.flags.c_contiguous for a in arrays)
    if size < THRESHOLD or not aligned or pool is None or getattr(_inside, "active", False):
        kernel(*arrays, *outs)
    else:
        job = _Job(kernel, [a.reshape(-1) for a in arrays], [o.reshape(-1) for o in outs])
        for _ in range(min(_cores() - 1, job.count - 1)):
            pool.submit(job.work)
        job.work()
        job.wait()
    return outs[0] if outputs == 1 else tuple(outs)


@overload
def piecewise(formula: Callable[..., Any], *arrays: np.ndarray,  # type: ignore[overload-overlap]
              outputs: Literal[1] = 1, dtype: np.dtype | None = None) -> np.ndarray: ...


@overload
def piecewise(formula: Callable[..., Any], *arrays: np.ndarray, outputs: int,
              dtype: np.dtype | None = None) -> tuple[np.ndarray, ...]: ...


def piecewise(formula: Callable[..., Any], *arrays: np.ndarray,
              outputs: int = 1, dtype: np.dtype | None = None
              ) -> np.ndarray | tuple[np.ndarray, ...]:
    """An elementwise NumPy formula returning its result(s), run by :func:`elementwise`.

    ``formula(*pieces)`` is ordinary whole-array code (temporaries are piece-sized and stay
    in cache); its results are copied into the outputs, cast to their dtype.
    """
    count = len(arrays)

    def kernel(*args: np.ndarray) -> None:
        results = formula(*args[:count])
        for out, result in zip(args[count:], (results,) if outputs == 1 else results):
            out[...] = result

    return _run(kernel, arrays, outputs, dtype)


_SAME_WIDTH_INT = {2: np.int16, 4: np.int32, 8: np.int64}


def keep(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``where(mask, x, 0)`` as a bitwise AND (x's bits or +0.0's), in x's dtype.

    Exact like ``where`` (inf and nan are kept or zeroed, where ``x·mask`` would make
    ``0·inf = nan``) and free of its per-element branch, which costs ten times more on
    unpredictable masks. Shapes broadcast.
    """
    x = np.asarray(x)
    ints = _SAME_WIDTH_INT[x.dtype.itemsize]
    bits = np.asarray(mask).astype(ints)
    np.negative(bits, out=bits)  # 1 -> all bits set
    out = np.empty(np.broadcast_shapes(x.shape, bits.shape), x.dtype)
    np.bitwise_and(x.view(ints), bits, out=out.view(ints))
    return out
