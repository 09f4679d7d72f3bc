"""What a run store keeps, and the interface every store implements.

A run is a definition (loss, options, expected batch count; immutable), a *generation* (a
random token drawn when the run is created), a state (open or finished), the signature its first
batch fixed, and one record per counted batch id. The generation tells runs that share an id
apart: a run deleted and re-created under the same id is another generation, and a batch is
written only into the generation it was validated against (``add`` checks it atomically with
the rest), so a batch in flight across a re-creation never lands in the new run. Stores keep
*per-batch* records, keyed by (run, batch id): adding is one atomic "insert unless present",
which is what makes a retried batch count once, and a crash between commit and answer harmless
(the retry finds the record). The aggregate is computed from the records when read
(``Stats.combine``: exact and independent of arrival order).

Implementations: :class:`~lossd.runs.sqlite_store.SqliteStore` (embedded, WAL) and
:class:`~lossd.runs.redis_store.RedisStore` (shared by replicas; Lua scripts).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol

from ..losses import Signature, Stats

OPEN, FINISHED = "open", "finished"


class Added(str, Enum):
    """Outcome of adding one batch record."""

    COUNTED = "counted"  # new batch id: stored and counted
    DUPLICATE = "duplicate"  # same batch id and same data: already counted, nothing changed
    CONFLICT = "conflict"  # same batch id, different data: refused
    NOT_FOUND = "not_found"
    REPLACED = "replaced"  # the run was deleted and re-created: another generation
    FINISHED = "finished"  # the run takes no more batches
    MISMATCH = "mismatch"  # signature differs from the run's first batch
    FULL = "full"  # expected_batches already counted


@dataclass(frozen=True)
class AddOutcome:
    """What an add did (:class:`Added`), with the run's batch count after it."""

    added: Added
    batches: int = 0  # batches counted in the run after this call
    signature: str = ""  # the run's signature text (for MISMATCH messages)


@dataclass(frozen=True)
class BatchRecord:
    """One counted batch: who sent it, a digest of its data, its statistics."""

    batch_id: str
    worker: str
    digest: str
    stats: Stats

    def encode(self) -> str:
        """Compact JSON; floats as hex so nan, ±inf and every bit survive."""
        s = self.stats
        numbers = [s.total.hex(), s.scaled.hex(), s.weight.hex(), s.rows, s.elements]
        if s.addend is not None:
            numbers.append(s.addend.hex())
        return json.dumps({"w": self.worker, "d": self.digest, "s": numbers},
                          separators=(",", ":"))

    @classmethod
    def decode(cls, batch_id: str, text: str | bytes) -> BatchRecord:
        """The record stored as ``text`` (from :meth:`encode`) under ``batch_id``."""
        obj = json.loads(text)
        total, scaled, weight, rows, elements, *addend = obj["s"]
        return cls(batch_id, obj["w"], obj["d"], Stats(
            float.fromhex(total), float.fromhex(scaled), float.fromhex(weight), rows, elements,
            float.fromhex(addend[0]) if addend else None))


def encode_signature(sig: Signature) -> str:
    """A signature as stored with its run (JSON)."""
    return json.dumps({"key": sig.key, "text": sig.text, "dtype": sig.dtype})


def decode_signature(text: str | bytes | None) -> Signature | None:
    """The signature :func:`encode_signature` stored; None when the run has none yet."""
    if not text:
        return None
    obj = json.loads(text)
    return Signature(obj["key"], obj["text"], obj["dtype"])


@dataclass(frozen=True)
class Look:
    """A run as an add of one batch id finds it (see ``RunStore.look``)."""

    generation: str | None  # the run's; None when there is no such run
    digest: str | None  # of the batch already counted under this id, if any
    batches: int  # batches counted so far
    signature: Signature | None  # the run's, from its first batch


@dataclass(frozen=True, order=True)
class Cursor:
    """A place in the newest-first order of runs: listing goes on after the run that has this
    creation time and id (ties on ``created`` are ordered by id, descending)."""

    created: float
    run_id: str

    def after(self, created: float, run_id: str) -> bool:
        """Whether the run (``created``, ``run_id``) comes after this place, newest first."""
        return (created, run_id) < (self.created, self.run_id)


@dataclass(frozen=True)
class RunSnapshot:
    """A run as stored: ``definition`` is the JSON the manager wrote at creation."""

    run_id: str
    definition: str
    generation: str
    state: str
    signature: Signature | None
    created: float
    updated: float
    batches: list[BatchRecord]


class RunStore(Protocol):
    """Storage of runs. Every method is atomic on its own (and across processes)."""

    async def open(self) -> None:
        """Connect (and create the schema if needed); called once before any other method."""

    async def close(self) -> None:
        """Release the connection; the stored runs stay."""

    async def create(self, run_id: str, definition: str, generation: str, now: float
                     ) -> tuple[str, str]:
        """Create ``run_id`` as ``generation`` unless it exists; returns the stored definition
        and generation either way."""

    async def add(self, run_id: str, generation: str, record: BatchRecord,
                  signature: Signature, expected_batches: int, now: float) -> AddOutcome:
        """Insert ``record`` unless its batch id is present (then DUPLICATE or CONFLICT by
        digest); refuses when the run is not ``generation`` (REPLACED) or absent (NOT_FOUND),
        on a finished run, a signature other than the first batch's, or a run with
        ``expected_batches`` (> 0) already counted."""

    async def look(self, run_id: str, batch_id: str) -> Look:
        """What an add of ``batch_id`` would meet (a cheap read before computing the batch;
        ``add`` decides, atomically)."""

    async def load(self, run_id: str) -> RunSnapshot | None:
        """The run and all its batch records, read consistently; None when there is no such
        run."""

    async def list_runs(self, *, state: str | None, after: Cursor | None, offset: int,
                        limit: int) -> list[RunSnapshot]:
        """Up to ``limit`` runs, newest first (by creation time, then id, both descending),
        each read as by :meth:`load`: only those in ``state`` (any when None), only those
        after ``after`` (from the start when None), skipping the first ``offset`` of them."""

    async def finish(self, run_id: str, now: float) -> bool:
        """Mark finished; False when there is no such run."""

    async def delete(self, run_id: str) -> bool:
        """Remove the run and its batches; False when there was none."""

    async def sweep(self, now: float) -> int:
        """Drop runs not updated within the retention; returns how many."""


def definition_json(obj: dict[str, Any]) -> str:
    """Canonical JSON (sorted keys), so equal definitions compare equal as text."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))
