"""Evaluation runs: a dataset-level loss that many workers feed, each batch counted once.

:class:`RunManager` is what both frontends call. ``create`` validates the loss and options and
stores the definition under a new *generation*; ``target`` reads which generation of the run a
batch is for (the current one, or the one the client names) and that generation's definition,
which the frontend decodes the batch against; ``add`` validates the batch, computes it on the
batching engine (like any request, with its sufficient statistics), and *then* records it in
the store in one atomic step keyed by the client's batch id and tied to that generation. So:

* a retried batch id is counted once (the store answers ``counted: false``); a retry of a batch
  already recorded is answered from the store without being computed again (retries come when
  the server is slow: they should not add load), and so is a batch that cannot match the run;
* a crash before the commit leaves nothing behind (the client was not answered; its retry
  counts), a crash after it leaves the record (the retry finds it): never twice, never lost;
* a batch whose loss, dtypes or per-sample shapes differ from the run's first batch is refused
  and changes nothing;
* a run deleted and re-created under the same id while a batch is in flight is another
  generation: the batch, checked against the deleted run, is refused (``NotFound``) and never
  lands in the new one; a client that names the generation it created (or read) gets the same
  refusal for a retry sent after the re-creation, so a batch id counts in one generation only.

``get`` reads the records and adds them up (``Aggregate.of``: exact, order-independent);
``list_runs`` pages through the runs newest first (a page token is the place after the page's last
run, so runs created meanwhile do not shift the next page).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import logging
import os
import re
import secrets
import time
import uuid
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from prometheus_client import CollectorRegistry
from prometheus_client import Counter as PromCounter

from .. import codec
from ..engine import Engine
from ..errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable, shown
from ..losses import Aggregate, Signature, check_options, get_spec, signature
from ..settings import Settings
from .store import (
    FINISHED,
    OPEN,
    Added,
    AddOutcome,
    BatchRecord,
    Cursor,
    Look,
    RunSnapshot,
    RunStore,
    definition_json,
)

log = logging.getLogger("lossd.runs")
RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
MAX_ID = 256
DATASET_REDUCTIONS = ("mean", "sum", "batchmean")
PAGE_SIZE, MAX_PAGE_SIZE = 20, 100


@dataclass(frozen=True)
class Definition:
    """A run's immutable part. ``tensors`` are tensor options (class weights), as stored JSON."""

    loss: str
    options: dict[str, Any]
    tensors: dict[str, Any]
    expected_batches: int

    def to_json(self) -> str:
        """Canonical JSON (sorted keys): equal definitions give equal text."""
        return definition_json({"loss": self.loss, "options": self.options,
                                "tensors": self.tensors,
                                "expected_batches": self.expected_batches})

    @classmethod
    def from_json(cls, text: str) -> Definition:
        """The definition :meth:`to_json` wrote."""
        obj = orjson.loads(text)
        return cls(obj["loss"], obj["options"], obj["tensors"], obj["expected_batches"])


@dataclass(frozen=True)
class RunView:
    """A run as read: its definition, state and the aggregate over every counted batch."""

    run_id: str
    definition: Definition
    generation: str  # drawn when the run was created: a re-created run has another
    state: str
    signature: str
    created: float
    updated: float
    aggregate: Aggregate
    workers: dict[str, int]

    @property
    def complete(self) -> bool:
        """Every expected batch is counted (never, when ``expected_batches`` is 0)."""
        expected = self.definition.expected_batches
        return expected > 0 and self.aggregate.batches >= expected


@dataclass(frozen=True)
class RunPage:
    """One page of runs, newest first; ``next_page_token`` is empty on the last page."""

    runs: list[RunView]
    next_page_token: str


def encode_page_token(cursor: Cursor) -> str:
    """The opaque token of a place in the listing (URL-safe base64 of its time and id).

    >>> token = encode_page_token(Cursor(1.5, "eval-1"))
    >>> decode_page_token(token)
    Cursor(created=1.5, run_id='eval-1')
    """
    text = f"{cursor.created.hex()} {cursor.run_id}"
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_page_token(token: str) -> Cursor:
    """The place :func:`encode_page_token` wrote; ``InvalidArgument`` for anything else."""
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        created, run_id = text.split(" ", 1)
        if RUN_ID.match(run_id):
            return Cursor(float.fromhex(created), run_id)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        pass
    raise InvalidArgument(f"page_token: expected a next_page_token from a previous page; got "
                          f"{token!r}"[:200], field="page_token")


@dataclass(frozen=True)
class BatchTarget:
    """Where a batch goes: one generation of a run, as :meth:`RunManager.target` read it (its
    definition, to decode and validate the batch, and what the store held for the batch id)."""

    run_id: str
    batch_id: str
    generation: str
    definition: Definition
    tensors: dict[str, np.ndarray]  # the definition's tensor options, decoded
    seen: Look


@dataclass(frozen=True)
class BatchAnswer:
    """The answer to an added batch: whether this call counted it, and the run's count."""

    counted: bool  # False: this batch id was already counted (a retry)
    batches: int


class RunMetrics:
    """``lossd_runs_total{event}`` and ``lossd_run_batches_total{outcome}`` (this process)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.runs = PromCounter("lossd_runs", "Evaluation runs, by event", ["event"],
                                registry=registry)
        self.batches = PromCounter("lossd_run_batches", "Batches sent to evaluation runs, by "
                                   "outcome", ["outcome"], registry=registry)
        for event in ("created", "finished", "deleted", "expired"):
            self.runs.labels(event)
        for outcome in ("counted", "duplicate", "rejected"):
            self.batches.labels(outcome)


def _answer(outcome: AddOutcome, run_id: str, batch_id: str, definition: Definition,
            mine: Signature) -> BatchAnswer:
    """The answer to an add (counted or a duplicate), or the error that refuses it."""
    if outcome.added is Added.COUNTED:
        return BatchAnswer(True, outcome.batches)
    if outcome.added is Added.DUPLICATE:
        return BatchAnswer(False, outcome.batches)
    raise {
        Added.NOT_FOUND: NotFound(f"run {run_id!r} does not exist (deleted or expired)",
                                  field="run_id"),
        Added.REPLACED: _replaced(run_id),
        Added.CONFLICT: FailedPrecondition(
            f"batch_id: batch {batch_id!r} was already counted with other data; a batch "
            f"id names one batch", field="batch_id"),
        Added.FINISHED: FailedPrecondition(f"run {run_id!r} is finished; it takes no more "
                                           f"batches", field="run_id"),
        Added.MISMATCH: InvalidArgument(
            f"inputs: every batch of a run must match its loss, options, dtypes and "
            f"per-sample shapes; expected {outcome.signature}; got {mine.text}",
            field="inputs"),
        Added.FULL: FailedPrecondition(
            f"run {run_id!r} already counted its expected {definition.expected_batches} "
            f"batches", field="batch_id"),
    }[outcome.added]


def _replaced(run_id: str) -> NotFound:
    """The refusal of a batch checked against a run that was deleted and re-created since."""
    return NotFound(f"run {run_id!r} was deleted and re-created while this batch was in "
                    f"flight: the batch was checked against the deleted run and is not counted "
                    f"in the new one", field="run_id")


def _view(snapshot: RunSnapshot) -> RunView:
    """A stored run as read: its definition and the aggregate over its batch records."""
    definition = Definition.from_json(snapshot.definition)
    spec = get_spec(definition.loss)
    sig = snapshot.signature
    aggregate = Aggregate.of(definition.loss, definition.options["reduction"],
                             [b.stats for b in snapshot.batches],
                             dtype=sig.dtype if sig else "float32", empty_mean=spec.empty_mean)
    workers = Counter(b.worker for b in snapshot.batches)
    return RunView(snapshot.run_id, definition, snapshot.generation, snapshot.state,
                   sig.text if sig else "",
                   snapshot.created, snapshot.updated, aggregate, dict(sorted(workers.items())))


def open_store(settings: Settings) -> RunStore:
    """The store ``settings.runs_store`` names."""
    if settings.runs_store == "redis":
        from .redis_store import RedisStore
        return RedisStore(settings.redis_url, settings.runs_retention_s)
    from .sqlite_store import SqliteStore
    return SqliteStore(Path(settings.runs_dir).expanduser() if settings.runs_dir
                       else default_runs_dir(), settings.runs_retention_s)


def default_runs_dir() -> Path:
    """``$XDG_DATA_HOME/lossd/runs`` (``~/.local/share/lossd/runs``)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "lossd" / "runs"


def batch_digest(arrays: dict[str, np.ndarray]) -> str:
    """Identity of a batch's data (dtype, shape, bytes of every tensor)."""
    digest = hashlib.blake2b(digest_size=16)
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}|{array.dtype.str}|{array.shape}|".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


class RunManager:
    """Runs of one process, on the store the settings choose (opened on first use)."""

    def __init__(self, settings: Settings, engine: Engine, store: RunStore | None = None
                 ) -> None:
        self.settings, self.engine = settings, engine
        self.store = store or open_store(settings)
        self.metrics = RunMetrics(engine.metrics.registry)
        self.limits = codec.Limits.of(settings)
        self._opened: asyncio.Task[None] | None = None
        self._definitions: dict[str, tuple[str, Definition, dict[str, np.ndarray]]] = {}

    async def _ready(self) -> RunStore:
        if self._opened is None:
            self._opened = asyncio.ensure_future(self.store.open())
        try:
            await asyncio.shield(self._opened)
        except Exception as exc:
            self._opened = None  # try again next time
            log.warning("run store unavailable: %s", exc)
            raise Unavailable(f"run store unavailable ({type(exc).__name__}: {exc})"[:300]
                              ) from None
        return self.store

    async def close(self) -> None:
        """Close the store, if it was opened."""
        if self._opened is not None and self._opened.done() and not self._opened.exception():
            await self.store.close()

    # --- create -----------------------------------------------------------------------------

    async def create(self, loss: str, options: dict[str, Any] | None = None,
                     tensors: dict[str, np.ndarray] | None = None, *,
                     expected_batches: int | None = None, run_id: str | None = None) -> RunView:
        """Create a run (or return it: same ``run_id`` and definition). Validates the loss,
        option names and values, tensor options, and that ``reduction`` reduces a dataset."""
        spec = get_spec(loss)
        options, tensors = dict(options or {}), dict(tensors or {})
        checked = check_options(spec, options)  # names, types and bounds, as for a call
        options = {key: checked[key] for key in options}  # the run keeps what it was given
        reduction = checked["reduction"]
        if reduction not in DATASET_REDUCTIONS:
            raise InvalidArgument(f"options.reduction: a run reduces a dataset; expected one of "
                                  f"{', '.join(r for r in spec.reductions if r != 'none')}; "
                                  f"got {reduction!r}", field="options.reduction")
        options["reduction"] = reduction
        for name in tensors:
            tensor = spec.tensor_map.get(name)
            if tensor is None or tensor.batch_axis is not None:
                fixed = [t.name for t in spec.tensors if t.batch_axis is None]
                raise InvalidArgument(f"options.{name}: a run fixes only per-call tensors "
                                      f"({', '.join(fixed) or 'none for this loss'}); batches "
                                      f"carry the rest", field=f"options.{name}")
        if expected_batches is not None and (not isinstance(expected_batches, int) or isinstance(
                expected_batches, bool) or expected_batches < 0):
            raise InvalidArgument("expected_batches: expected an integer >= 0 (0: open-ended); "
                                  f"got {expected_batches!r}", field="expected_batches")
        if run_id is not None and (not isinstance(run_id, str) or not RUN_ID.match(run_id)):
            raise InvalidArgument("run_id: expected 1-128 of A-Z a-z 0-9 . _ - (starting with "
                                  f"a letter or digit); got {run_id!r}"[:200], field="run_id")
        definition = Definition(loss, options, {
            name: codec.to_json(np.asarray(a), codec.Encoding.B64) for name, a in tensors.items()
        }, expected_batches or 0)
        run_id = run_id or uuid.uuid4().hex
        store = await self._ready()
        now = time.time()
        swept = await store.sweep(now)
        if swept:
            self.metrics.runs.labels("expired").inc(swept)
        stored, _ = await store.create(run_id, definition.to_json(), secrets.token_hex(8), now)
        if stored != definition.to_json():
            raise FailedPrecondition(f"run_id: run {run_id!r} exists with another definition",
                                     field="run_id")
        self.metrics.runs.labels("created").inc()
        return await self.get(run_id)

    # --- batches ----------------------------------------------------------------------------

    async def target(self, run_id: str, batch_id: str, generation: str | None = None
                     ) -> BatchTarget:
        """The run generation a batch goes to: the current one, or ``generation`` (what the
        client created or read; None or "": the current one), which must still be the run's."""
        if not isinstance(batch_id, str) or not 0 < len(batch_id) <= MAX_ID:
            self.metrics.batches.labels("rejected").inc()
            raise InvalidArgument(f"batch_id: expected a string of 1-{MAX_ID} characters; got "
                                  f"{shown(batch_id)}", field="batch_id")
        if generation is not None and not isinstance(generation, str):
            self.metrics.batches.labels("rejected").inc()
            raise InvalidArgument(f"generation: expected a string (the run's generation); got "
                                  f"{shown(generation)}", field="generation")
        if not isinstance(run_id, str) or not RUN_ID.match(run_id):
            raise NotFound(f"run {shown(run_id)} does not exist", field="run_id")
        seen = await (await self._ready()).look(run_id, batch_id)
        if seen.generation is None:
            raise NotFound(f"run {run_id!r} does not exist (deleted or expired)",
                           field="run_id")
        if generation and generation != seen.generation:
            raise NotFound(f"run {run_id!r} is generation {seen.generation!r}, not "
                           f"{shown(generation)}: the run was deleted and re-created since; the "
                           f"batch is not counted in the new run", field="generation")
        definition, tensors = await self._definition(run_id, seen.generation)
        return BatchTarget(run_id, batch_id, seen.generation, definition, tensors, seen)

    async def _definition(self, run_id: str, generation: str
                          ) -> tuple[Definition, dict[str, np.ndarray]]:
        """The definition of ``generation`` of the run (cached: it never changes)."""
        cached = self._definitions.get(run_id)
        if cached is not None and cached[0] == generation:
            return cached[1:]
        snapshot = await self._load(run_id)
        if snapshot.generation != generation:  # re-created since the caller's read
            raise _replaced(run_id)
        definition = Definition.from_json(snapshot.definition)
        spec = get_spec(definition.loss)
        tensors = {name: codec.from_json(obj, f"options.{name}", spec.tensor_map[name],
                                         self.limits)[0]
                   for name, obj in definition.tensors.items()}
        if len(self._definitions) > 10_000:
            self._definitions.clear()
        self._definitions[run_id] = (generation, definition, tensors)
        return definition, tensors

    async def add(self, target: BatchTarget, arrays: dict[str, np.ndarray], *,
                  worker: str = "", timeout: float | None = None,
                  bfloat16: Collection[str] = ()) -> BatchAnswer:
        """Compute one batch and count it once, in ``target``'s generation of the run only
        (see the module docstring); ``bfloat16`` names the tensors that came as bfloat16."""
        try:
            answer = await self._add(target, arrays, worker, timeout, bfloat16)
        except (InvalidArgument, FailedPrecondition):
            self.metrics.batches.labels("rejected").inc()
            raise
        self.metrics.batches.labels("counted" if answer.counted else "duplicate").inc()
        return answer

    async def _add(self, target: BatchTarget, arrays: dict[str, np.ndarray], worker: str,
                   timeout: float | None, bfloat16: Collection[str]) -> BatchAnswer:
        if not isinstance(worker, str) or len(worker) > MAX_ID:
            raise InvalidArgument(f"worker: expected a string of at most {MAX_ID} characters",
                                  field="worker")
        run_id, batch_id, definition = target.run_id, target.batch_id, target.definition
        fixed = sorted(set(arrays) & set(target.tensors))
        if fixed:
            raise InvalidArgument(f"inputs.{fixed[0]}: fixed by the run's options; a batch "
                                  f"sends only its per-sample tensors", field=f"inputs.{fixed[0]}")
        call = self.engine.prepare(definition.loss, {**arrays, **target.tensors},
                                   definition.options, bfloat16=bfloat16)
        mine = signature(call)
        digest = batch_digest(arrays)
        seen = target.seen
        if seen.digest is not None:  # a retry (or a reused id): nothing to compute
            return _answer(AddOutcome(Added.DUPLICATE if seen.digest == digest
                                      else Added.CONFLICT, seen.batches),
                           run_id, batch_id, definition, mine)
        if seen.signature is not None and seen.signature.key != mine.key:
            return _answer(AddOutcome(Added.MISMATCH, seen.batches, seen.signature.text),
                           run_id, batch_id, definition, mine)
        result = await self.engine.submit(call, timeout=timeout, stats=True)
        assert result.stats is not None
        record = BatchRecord(batch_id, worker, digest, result.stats)
        outcome = await (await self._ready()).add(run_id, target.generation, record, mine,
                                                  definition.expected_batches, time.time())
        return _answer(outcome, run_id, batch_id, definition, mine)

    # --- read, finish, delete ---------------------------------------------------------------

    async def _load(self, run_id: str) -> RunSnapshot:
        if not isinstance(run_id, str) or not RUN_ID.match(run_id):
            raise NotFound(f"run {run_id!r} does not exist", field="run_id")
        snapshot = await (await self._ready()).load(run_id)
        if snapshot is None:
            self._definitions.pop(run_id, None)
            raise NotFound(f"run {run_id!r} does not exist (deleted or expired)",
                           field="run_id")
        return snapshot

    async def get(self, run_id: str) -> RunView:
        """The run and its aggregate over every batch counted so far."""
        return _view(await self._load(run_id))

    async def list_runs(self, *, state: str | None = None, limit: int | None = None,
                        page_token: str | None = None, offset: int | None = None) -> RunPage:
        """A page of runs, newest first, each as :meth:`get` reads it.

        Args:
            state: only runs in this state ("open" or "finished"); None or "": every run.
            limit: runs per page, 1 to 100 (None or 0: 20).
            page_token: go on after the page that returned it (None or "": from the newest).
            offset: skip this many runs first (after ``page_token``, if both are given).
        """
        if state and state not in (OPEN, FINISHED):
            raise InvalidArgument(f"state: expected {OPEN} or {FINISHED}; got {state!r}"[:200],
                                  field="state")
        limit = limit or PAGE_SIZE
        if not 1 <= limit <= MAX_PAGE_SIZE:
            raise InvalidArgument(f"limit: expected 1 to {MAX_PAGE_SIZE}; got {limit}",
                                  field="limit")
        if offset is not None and offset < 0:
            raise InvalidArgument(f"offset: expected an integer >= 0; got {offset}",
                                  field="offset")
        after = decode_page_token(page_token) if page_token else None
        snapshots = await (await self._ready()).list_runs(
            state=state or None, after=after, offset=offset or 0, limit=limit + 1)
        last = snapshots[limit - 1] if len(snapshots) > limit else None
        token = encode_page_token(Cursor(last.created, last.run_id)) if last else ""
        return RunPage([_view(s) for s in snapshots[:limit]], token)

    async def finish(self, run_id: str) -> RunView:
        """No more batches; the aggregate stays readable until deleted or expired."""
        await self._load(run_id)
        if not await (await self._ready()).finish(run_id, time.time()):
            raise NotFound(f"run {run_id!r} does not exist", field="run_id")
        self.metrics.runs.labels("finished").inc()
        view = await self.get(run_id)
        assert view.state == FINISHED
        return view

    async def delete(self, run_id: str) -> None:
        """Delete the run and its batches; ``NotFound`` when there is no such run."""
        if not isinstance(run_id, str) or not RUN_ID.match(run_id) or not await (
                await self._ready()).delete(run_id):
            raise NotFound(f"run {run_id!r} does not exist", field="run_id")
        self._definitions.pop(run_id, None)
        self.metrics.runs.labels("deleted").inc()
