"""A dataset-level loss as a ``torchmetrics.Metric``, kept on a lossd server.

``RemoteLossMetric`` feeds an evaluation run (``docs/evaluations.md``): each ``update`` adds one
batch, ``compute`` reads the run's aggregate — the value one call on the concatenation of every
batch gives, whichever rank or process sent them. Needs the ``lossd[torch]`` extra. ::

    metric = RemoteLossMetric("cross_entropy", Client("http://lossd:8000"), run_id="eval-7",
                              weight=class_weights)
    for logits, labels in loader:       # on each rank
        metric.update(logits, labels)
    metric.compute()                    # tensor(0.4123): over every rank's batches

The state lives on the server, so nothing is gathered but a counter:

* Batch ids are ``f"{rank}-{n}"``, ``n`` the update's index on that rank. A batch is counted
  once per id, so a retried call, an ``update`` called again after it raised (its index does not
  advance until the server acknowledged it), or a restarted rank replaying its shard from the
  start never counts a batch twice (a replayed batch must hold the same data: other data under a
  counted id is refused).
* Every rank must feed the same run: ``run_id`` is the user's (the same on every rank) or, with
  a ``torch.distributed`` group, made by rank 0 and broadcast (when the metric is made, or on
  its first use if the group comes later); a single process makes its own. ``reset()`` moves
  on to a new run, ``"{run_id}.{k}"`` after the k-th reset (the same on every rank, with no
  communication). Old runs expire on the server (``LOSSD_RUNS_RETENTION_S``).
* The one registered state, ``batches`` (this rank's acknowledged updates), has
  ``dist_reduce_fx="sum"``: torchmetrics' sync on ``compute`` (a collective, so also a barrier
  after which every rank's batches are in) makes it the number every rank sent, and ``compute``
  checks it against the batches the run counted — a mismatch (another job writing to the same
  run id, a rank that gave up on a batch) raises instead of answering a wrong value. Without a
  process group nothing is synced: ``compute`` then checks that the run holds at least this
  process's batches, and the caller makes sure the other processes are done.
* ``compute`` reads the server every time (``compute_with_cache=False`` by default: other ranks
  may have added batches since), and returns a tensor of the aggregate's dtype (torch's result
  dtype) on the metric's device. ``forward`` adds the batch and returns that batch's own loss (a
  second call to the server).

Tensors travel detached, on the CPU, as NumPy; bfloat16 as float32 (NumPy has none), so such a
run computes in float32. Tensors given with the options (a class ``weight``) are run options,
the same for every batch. Runs take ``reduction`` ``mean``, ``sum`` or ``batchmean``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from importlib.util import find_spec
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

from .client import LossResult
from .errors import FailedPrecondition, InvalidArgument
from .losses import check_options, get_spec
from .torch import name_arguments

# torchmetrics.Metric's own keyword arguments (the rest are the loss's options)
METRIC_KWARGS = frozenset({"compute_on_cpu", "dist_sync_on_step", "process_group", "dist_sync_fn",
                           "distributed_available_fn", "sync_on_compute", "compute_with_cache"})


class Runs(Protocol):
    """What the metric needs of a client: :class:`lossd.Client` and :class:`lossd.GrpcClient`."""

    def create_run(self, loss: str, *, expected_batches: int | None = None,
                   run_id: str | None = None, **options: object) -> dict[str, Any]:
        """A run (the same ``run_id`` and definition again: the same run)."""
        ...

    def add_batch(self, run_id: str, batch_id: str, *, worker: str = "", generation: str = "",
                  **tensors: object) -> dict[str, Any]:
        """Count one batch, once per ``batch_id``, in ``generation`` of the run (when given)."""
        ...

    def run(self, run_id: str) -> dict[str, Any]:
        """The run and its aggregate."""
        ...

    def compute(self, loss: str, *, grad: bool = False, **arguments: object) -> LossResult:
        """One loss call (``forward``'s batch value)."""
        ...


if not (TYPE_CHECKING or (find_spec("torch") and find_spec("torchmetrics"))):
    # `pip install lossd` without the [torch] extra: the module still imports (the package's
    # doctests import every module), and using it says what to install.
    def __getattr__(name: str) -> NoReturn:
        if name != "RemoteLossMetric":  # the import system or pytest looking for other names
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        raise ModuleNotFoundError(f"lossd.torchmetrics.{name} needs torch and torchmetrics: "
                                  "pip install 'lossd[torch]'", name="torchmetrics")
else:
    # Where the extra is missing (`make test`), mypy sees torch as Any: the `unused-ignore`
    # comments below silence what it reports only then.
    import torch  # type: ignore[import-not-found,unused-ignore]
    from torch import Tensor  # type: ignore[import-not-found,unused-ignore]
    from torchmetrics import Metric  # type: ignore[import-not-found,unused-ignore]

    from .torch import to_numpy

    def _wired(values: Mapping[str, object]) -> dict[str, Any]:
        """Tensors as NumPy (other values as they are)."""
        return {k: to_numpy(v) if isinstance(v, Tensor) else v for k, v in values.items()}

    class RemoteLossMetric(Metric):  # type: ignore[misc,unused-ignore]
        """A loss over a whole dataset, aggregated by lossd (see the module docstring).

        Args:
            loss: the loss's wire name (``"cross_entropy"``).
            client: a :class:`lossd.Client` or :class:`lossd.GrpcClient`.
            run_id: the run every rank feeds (the same on each); made when not given.
            rank: this process's rank (default: ``torch.distributed``'s, else ``$RANK``, else 0).
            **options: the loss's options and per-run tensors (class ``weight``), and
                torchmetrics' own keyword arguments (``process_group``, ...).

        Example:
            >>> metric = RemoteLossMetric("mse", client, reduction="sum")  # doctest: +SKIP
            >>> metric.update(prediction, target)  # doctest: +SKIP
            >>> metric.compute()  # doctest: +SKIP
            tensor(12.5000)
        """

        is_differentiable = False
        higher_is_better = False
        full_state_update = False
        batches: Tensor

        def __init__(self, loss: str, client: Runs, *, run_id: str | None = None,
                     rank: int | None = None, **options: object) -> None:
            metric_kwargs: dict[str, Any] = {"compute_with_cache": False}
            metric_kwargs.update({k: options.pop(k) for k in list(options) if k in METRIC_KWARGS})
            super().__init__(**metric_kwargs)
            self.spec = get_spec(loss)
            self.client = client
            constants, scalars = name_arguments(self.spec, (), options)
            reduction = check_options(self.spec, scalars)["reduction"]
            if reduction == "none":
                raise InvalidArgument(
                    f"{loss}: a dataset-level loss needs reduction 'mean', 'sum' or 'batchmean' "
                    f"(this loss's default is {self.spec.option_map['reduction'].default!r})",
                    field="reduction")
            self.options: dict[str, Any] = {**scalars, **_wired(constants)}
            self._base_run_id = run_id
            self._rank = rank
            self._evaluation = 0  # resets so far: names this evaluation's run
            self._created = False  # this process has created (or joined) the current run
            self._generation = ""  # of the current run: a re-created run refuses our batches
            self.add_state("batches", default=torch.tensor(0), dist_reduce_fx="sum")
            if run_id is None and _distributed():
                # now, while every rank constructs it: a broadcast on first use could pair
                # with the sync of a rank whose first use is compute()
                self._base_run_id = self._shared_run_id()

        @property
        def rank(self) -> int:
            """This process's rank: part of every batch id it sends."""
            if self._rank is None:
                self._rank = (torch.distributed.get_rank(self.process_group)
                              if _distributed() else int(os.environ.get("RANK", "0")))
            return self._rank

        @property
        def run_id(self) -> str:
            """The run this evaluation feeds: ``run_id``, then ``run_id.k`` after k resets."""
            if self._base_run_id is None:
                self._base_run_id = self._shared_run_id()
            base = self._base_run_id
            return base if self._evaluation == 0 else f"{base}.{self._evaluation}"

        def _shared_run_id(self) -> str:
            """A fresh run id, the same on every rank (rank 0's, broadcast)."""
            made = f"torchmetrics-{self.spec.name}-{uuid.uuid4().hex}"
            if _distributed():
                shared = [made]
                torch.distributed.broadcast_object_list(shared, src=0, group=self.process_group)
                return str(shared[0])
            if int(os.environ.get("WORLD_SIZE", "1")) > 1:
                raise InvalidArgument(
                    "several processes (WORLD_SIZE > 1) and no torch.distributed group: pass "
                    "run_id=, the same on every rank", field="run_id")
            return made

        def _ensure_run(self) -> str:
            run_id = self.run_id
            if not self._created:
                run = self.client.create_run(self.spec.name, run_id=run_id, **self.options)
                self._generation = run.get("generation", "")
                self._created = True
            return run_id

        def update(self, *tensors: Tensor, **named: Tensor) -> None:
            """Add one batch: tensors in the registry's order (``preds, target`` for most
            losses) or by name. Called again after it raised, it sends the same batch id."""
            values, extra = name_arguments(self.spec, tensors, named)
            if extra:
                raise TypeError(f"update takes tensors only; got {', '.join(extra)} (options "
                                "go to the constructor)")
            run_id = self._ensure_run()
            rank = self.rank
            self.client.add_batch(run_id, f"{rank}-{int(self.batches)}", worker=f"rank-{rank}",
                                  generation=self._generation, **_wired(values))
            self.batches += 1

        def compute(self) -> Tensor:
            """The loss over every batch the run counted, checked against what was sent."""
            aggregate = self.client.run(self._ensure_run())["aggregate"]
            counted, sent = int(aggregate["batches"]), int(self.batches)
            if (counted != sent) if self._is_synced else (counted < sent):
                raise FailedPrecondition(
                    f"run {self.run_id!r} counted {counted} batches; "
                    f"{'the ranks' if self._is_synced else 'this process'} sent {sent}: another "
                    "writer uses this run id, or a batch was given up on", field="run_id")
            return torch.tensor(float(aggregate["value"]), dtype=getattr(torch, aggregate["dtype"]),
                                device=self.device)

        def forward(self, *tensors: Tensor, **named: Tensor) -> Tensor:
            """Add the batch (as ``update``) and return its own loss."""
            self.update(*tensors, **named)
            values, _ = name_arguments(self.spec, tensors, named)
            result = self.client.compute(self.spec.name, **_wired(values),
                                         **self.options)
            return torch.from_numpy(result.loss.copy()).to(self.device)

        def reset(self) -> None:
            """Start a new evaluation: the next batches go to a new run (see ``run_id``)."""
            self._evaluation += 1
            self._created = False
            super().reset()

    def _distributed() -> bool:
        return bool(torch.distributed.is_available() and torch.distributed.is_initialized())
