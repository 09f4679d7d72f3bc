"""The embedded run store: one SQLite file in a data directory, WAL mode, no setup.

Every write is one ``BEGIN IMMEDIATE`` transaction (the batch record and the run's counter
together, written only if the run is still the generation the batch was validated against),
committed with ``synchronous=FULL`` before the caller is answered: a batch that was
acknowledged survives a SIGKILL (and a power cut), and one that was not committed is simply
absent, so the client's retry counts it once. Several processes may share the file (``--workers``
or replicas on one host): SQLite's locking serializes the writers (``busy_timeout``).
The blocking calls run on one dedicated thread per store, off the event loop.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from ..losses import Signature
from .store import (
    FINISHED,
    OPEN,
    Added,
    AddOutcome,
    BatchRecord,
    Cursor,
    Look,
    RunSnapshot,
    decode_signature,
    encode_signature,
)

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    definition TEXT NOT NULL,
    generation TEXT NOT NULL DEFAULT '',
    state TEXT NOT NULL,
    signature TEXT,
    batches INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS batches (
    run_id TEXT NOT NULL,
    batch_id TEXT NOT NULL,
    record TEXT NOT NULL,
    PRIMARY KEY (run_id, batch_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS runs_updated ON runs (updated);
CREATE INDEX IF NOT EXISTS runs_created ON runs (created DESC, id DESC);
"""
UPGRADE = "ALTER TABLE runs ADD COLUMN generation TEXT NOT NULL DEFAULT ''"
"""A file written before runs had generations: its runs are generation ''."""


class SqliteStore:
    """Runs in ``directory/runs.sqlite3``; runs idle longer than ``retention_s`` are swept
    (0: kept until deleted)."""

    def __init__(self, directory: Path, retention_s: float) -> None:
        self.path = Path(directory) / "runs.sqlite3"
        self.retention_s = retention_s
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="lossd-runs-sqlite")
        self._db: sqlite3.Connection | None = None

    async def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def run() -> T:
            assert self._db is not None
            return fn(self._db)
        return await asyncio.get_running_loop().run_in_executor(self._thread, run)

    async def open(self) -> None:
        """Open (or create) the file in WAL mode with ``synchronous=FULL``; create the schema."""
        def connect() -> None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None,
                                 check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA busy_timeout=30000")
            with _transaction(db):
                for statement in SCHEMA.split(";"):
                    if statement.strip():
                        db.execute(statement)
                columns = {row[1] for row in db.execute("PRAGMA table_info(runs)")}
                if "generation" not in columns:
                    db.execute(UPGRADE)
            self._db = db
        await asyncio.get_running_loop().run_in_executor(self._thread, connect)

    async def close(self) -> None:
        """Close the connection and stop the store's thread."""
        if self._db is not None:
            await self._call(lambda db: db.close())
            self._db = None
        self._thread.shutdown(wait=True)

    async def create(self, run_id: str, definition: str, generation: str, now: float
                     ) -> tuple[str, str]:
        """:meth:`RunStore.create`: ``INSERT OR IGNORE``, then read back, in one transaction."""
        def create(db: sqlite3.Connection) -> tuple[str, str]:
            with _transaction(db):
                db.execute("INSERT OR IGNORE INTO runs (id, definition, generation, state, "
                           "created, updated) VALUES (?, ?, ?, ?, ?, ?)",
                           (run_id, definition, generation, OPEN, now, now))
                stored, stored_generation = db.execute(
                    "SELECT definition, generation FROM runs WHERE id = ?", (run_id,)).fetchone()
                return stored, stored_generation
        return await self._call(create)

    async def add(self, run_id: str, generation: str, record: BatchRecord,
                  signature: Signature, expected_batches: int, now: float) -> AddOutcome:
        """:meth:`RunStore.add`: every check, the record and the counter in one transaction
        (the counter's update, too, only where the run is still ``generation``)."""
        def add(db: sqlite3.Connection) -> AddOutcome:
            with _transaction(db):
                run = db.execute("SELECT generation, state, signature, batches FROM runs "
                                 "WHERE id = ?", (run_id,)).fetchone()
                if run is None:
                    return AddOutcome(Added.NOT_FOUND)
                stored_generation, state, stored_signature, batches = run
                if stored_generation != generation:
                    return AddOutcome(Added.REPLACED, batches)
                existing = db.execute("SELECT record FROM batches WHERE run_id = ? AND "
                                      "batch_id = ?", (run_id, record.batch_id)).fetchone()
                if existing is not None:
                    same = BatchRecord.decode(record.batch_id, existing[0]).digest == record.digest
                    return AddOutcome(Added.DUPLICATE if same else Added.CONFLICT, batches)
                if state != OPEN:
                    return AddOutcome(Added.FINISHED, batches)
                fixed = decode_signature(stored_signature)
                if fixed is not None and fixed.key != signature.key:
                    return AddOutcome(Added.MISMATCH, batches, fixed.text)
                if 0 < expected_batches <= batches:
                    return AddOutcome(Added.FULL, batches)
                db.execute("INSERT INTO batches (run_id, batch_id, record) VALUES (?, ?, ?)",
                           (run_id, record.batch_id, record.encode()))
                updated = db.execute("UPDATE runs SET batches = batches + 1, updated = ?, "
                                     "signature = COALESCE(signature, ?) "
                                     "WHERE id = ? AND generation = ?",
                                     (now, encode_signature(signature), run_id, generation))
                assert updated.rowcount == 1  # the write lock is held since the SELECT
                return AddOutcome(Added.COUNTED, batches + 1)
        return await self._call(add)

    async def look(self, run_id: str, batch_id: str) -> Look:
        """:meth:`RunStore.look`, in one read transaction."""
        def look(db: sqlite3.Connection) -> Look:
            with _transaction(db, "BEGIN"):  # one consistent read
                run = db.execute("SELECT generation, batches, signature FROM runs WHERE id = ?",
                                 (run_id,)).fetchone()
                row = db.execute("SELECT record FROM batches WHERE run_id = ? AND batch_id = ?",
                                 (run_id, batch_id)).fetchone()
            generation, batches, signature = run if run is not None else (None, 0, None)
            digest = None if row is None else BatchRecord.decode(batch_id, row[0]).digest
            return Look(generation, digest, batches, decode_signature(signature))
        return await self._call(look)

    async def load(self, run_id: str) -> RunSnapshot | None:
        """:meth:`RunStore.load`, in one read transaction."""
        def load(db: sqlite3.Connection) -> RunSnapshot | None:
            with _transaction(db, "BEGIN"):  # one consistent read
                return _snapshot(db, run_id)
        return await self._call(load)

    async def list_runs(self, *, state: str | None, after: Cursor | None, offset: int,
                        limit: int) -> list[RunSnapshot]:
        """:meth:`RunStore.list_runs`: the page's ids from the ``(created, id)`` index, then
        each run, all in one read transaction."""
        where: list[str] = ["1"]
        args: list[object] = []
        if state is not None:
            where.append("state = ?")
            args.append(state)
        if after is not None:
            where.append("(created < ? OR (created = ? AND id < ?))")
            args += [after.created, after.created, after.run_id]

        def page(db: sqlite3.Connection) -> list[RunSnapshot]:
            with _transaction(db, "BEGIN"):  # one consistent read
                ids = db.execute(f"SELECT id FROM runs WHERE {' AND '.join(where)} "
                                 "ORDER BY created DESC, id DESC LIMIT ? OFFSET ?",
                                 (*args, limit, offset)).fetchall()
                found = [_snapshot(db, run_id) for (run_id,) in ids]
            return [s for s in found if s is not None]
        return await self._call(page)

    async def finish(self, run_id: str, now: float) -> bool:
        """:meth:`RunStore.finish`."""
        def finish(db: sqlite3.Connection) -> bool:
            with _transaction(db):
                return db.execute("UPDATE runs SET state = ?, updated = ? WHERE id = ?",
                                  (FINISHED, now, run_id)).rowcount > 0
        return await self._call(finish)

    async def delete(self, run_id: str) -> bool:
        """:meth:`RunStore.delete`: the batches and the run in one transaction."""
        def delete(db: sqlite3.Connection) -> bool:
            with _transaction(db):
                db.execute("DELETE FROM batches WHERE run_id = ?", (run_id,))
                return db.execute("DELETE FROM runs WHERE id = ?", (run_id,)).rowcount > 0
        return await self._call(delete)

    async def sweep(self, now: float) -> int:
        """:meth:`RunStore.sweep` (nothing when ``retention_s`` is 0)."""
        if self.retention_s <= 0:
            return 0
        cutoff = now - self.retention_s

        def sweep(db: sqlite3.Connection) -> int:
            with _transaction(db):
                db.execute("DELETE FROM batches WHERE run_id IN "
                           "(SELECT id FROM runs WHERE updated < ?)", (cutoff,))
                return db.execute("DELETE FROM runs WHERE updated < ?", (cutoff,)).rowcount
        return await self._call(sweep)


def _snapshot(db: sqlite3.Connection, run_id: str) -> RunSnapshot | None:
    """The run and its batch records (inside the caller's transaction)."""
    run = db.execute("SELECT definition, generation, state, signature, created, updated "
                     "FROM runs WHERE id = ?", (run_id,)).fetchone()
    if run is None:
        return None
    rows = db.execute("SELECT batch_id, record FROM batches WHERE run_id = ?",
                      (run_id,)).fetchall()
    definition, generation, state, signature, created, updated = run
    return RunSnapshot(run_id, definition, generation, state, decode_signature(signature),
                       created, updated, [BatchRecord.decode(b, r) for b, r in rows])


class _transaction:
    """``BEGIN IMMEDIATE`` (take the write lock up front: no upgrade deadlocks) ... COMMIT,
    ROLLBACK on any error."""

    def __init__(self, db: sqlite3.Connection, begin: str = "BEGIN IMMEDIATE") -> None:
        self.db, self.begin = db, begin

    def __enter__(self) -> None:
        self.db.execute(self.begin)

    def __exit__(self, kind: object, *rest: object) -> None:
        self.db.execute("ROLLBACK" if kind is not None else "COMMIT")
