"""A run deleted and re-created under the same id is a new run: a batch validated against the
old one never lands in the new one, and the new one stays usable.

Each test drives two run managers over one store (as two replicas would: the writers' and the
one that deletes and re-creates), with the SQLite store and with a private ``redis-server``.
The writers' store is wrapped in a gate that can hold one batch after it was validated and
computed, just before it is written: the run is deleted and re-created with other options while
that batch is held, so every test meets the interleaving on every run, without sleeping.
Each run's aggregate is checked against one call on the concatenation of exactly the batches it
acknowledged, under that run's own options. Over REST and gRPC, a run shows its generation and a
batch that names a generation since deleted is refused alike (404 / NOT_FOUND, field
``generation``).
"""

from __future__ import annotations

import asyncio
import itertools
import re
import sqlite3
from collections.abc import Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator

import httpx
import numpy as np
import pytest
import redis

from lossd.client import Client, GrpcClient
from lossd.engine import Engine
from lossd.errors import FailedPrecondition, InvalidArgument, NotFound
from lossd.losses import compute
from lossd.runs import BatchAnswer, RunManager, RunStore, open_store
from lossd.settings import Settings
from tests.support.server import RunningServer, start_server

LOSS = "cross_entropy"
DEFINITIONS = ({"reduction": "mean"}, {"reduction": "sum", "label_smoothing": 0.25})
"""Two definitions whose batches look alike (same tensors), so only the run tells them apart."""


def batch(i: int) -> dict[str, np.ndarray]:
    """Batch ``i``: 4-class logits (float64) and targets, 2 to 6 samples."""
    rng = np.random.default_rng(7000 + i)
    n = 2 + i % 5
    return {"input": rng.normal(size=(n, 4)), "target": rng.integers(0, 4, n)}


def reference(ids: list[int], options: dict[str, Any]) -> float:
    """The loss of one call on the concatenation of batches ``ids``."""
    parts = [batch(i) for i in sorted(ids)]
    return float(compute(LOSS, {"input": np.concatenate([p["input"] for p in parts]),
                                "target": np.concatenate([p["target"] for p in parts])},
                         options).loss)


class Gate:
    """A run store whose next ``add`` after :meth:`hold` waits, already validated and
    computed, until :meth:`release`; everything else goes straight to ``store``."""

    def __init__(self, store: RunStore) -> None:
        self.store = store
        self.armed = False
        self.held = asyncio.Event()
        self.go = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def hold(self) -> None:
        """Hold the next add."""
        self.armed, self.held, self.go = True, asyncio.Event(), asyncio.Event()

    def release(self) -> None:
        """Let the held add go on."""
        self.go.set()

    async def add(self, *args: Any, **kwargs: Any) -> Any:
        """The store's add, after the gate opens (when held)."""
        if self.armed:
            self.armed = False
            self.held.set()
            await self.go.wait()
        return await self.store.add(*args, **kwargs)


@pytest.fixture(params=["sqlite", "redis"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """Settings of both managers: one SQLite file, or the private redis-server."""
    if request.param == "redis":
        return Settings(runs_store="redis", redis_url=request.getfixturevalue("redis_url"))
    return Settings(runs_store="sqlite", runs_dir=str(tmp_path))


@asynccontextmanager
async def replicas(settings: Settings) -> AsyncIterator[tuple[RunManager, Gate, RunManager]]:
    """The writers' manager (its store behind a :class:`Gate`) and the other one."""
    engines = [Engine(settings), Engine(settings)]
    for engine in engines:
        await engine.start()
    gate = Gate(open_store(settings))
    writers = RunManager(settings, engines[0], store=gate)  # type: ignore[arg-type]
    other = RunManager(settings, engines[1])
    try:
        yield writers, gate, other
    finally:
        await writers.close()
        await other.close()
        for engine in engines:
            await engine.drain(5)


async def add(runs: RunManager, run_id: str, batch_id: str, arrays: dict[str, np.ndarray], *,
              generation: str | None = None, worker: str = "") -> BatchAnswer:
    """What a frontend does with a batch: read its run's generation, then add it there."""
    target = await runs.target(run_id, batch_id, generation)
    return await runs.add(target, arrays, worker=worker)


def run(body: Callable[[], Awaitable[None]]) -> None:
    """Run ``body`` on a fresh event loop; a hang fails within a minute."""
    async def bounded() -> None:
        await asyncio.wait_for(body(), 60)
    asyncio.run(bounded())


_ids: Iterator[int] = itertools.count()


def fresh_run_id(name: str) -> str:
    """A run id no other test (on the shared redis-server) uses."""
    return f"{name}-{next(_ids)}-{np.random.default_rng().integers(1 << 30)}"


@pytest.mark.parametrize("again", [1, 0], ids=["other-options", "same-options"])
def test_a_batch_in_flight_never_lands_in_the_recreated_run(settings: Settings,
                                                            again: int) -> None:
    run_id = fresh_run_id("inflight")

    async def body() -> None:
        async with replicas(settings) as (writers, gate, other):
            old = await other.create(LOSS, DEFINITIONS[0], run_id=run_id)
            gate.hold()
            in_flight = asyncio.create_task(add(writers, run_id, "b0", batch(0)))
            await gate.held.wait()  # b0 was checked against the first run and computed
            await other.delete(run_id)
            new = await other.create(LOSS, DEFINITIONS[again], run_id=run_id)
            assert new.generation != old.generation
            gate.release()
            with pytest.raises(NotFound, match="re-created while this batch was in flight"):
                await in_flight
            for i in (1, 2):  # the new run takes its own batches
                assert (await add(writers, run_id, f"b{i}", batch(i))).counted
            view = await other.get(run_id)
            assert view.aggregate.batches == 2
            assert float(view.aggregate.value) == pytest.approx(
                reference([1, 2], DEFINITIONS[again]), rel=1e-12)
    run(body)


def test_a_retry_for_the_deleted_run_is_not_counted_in_the_new_one(settings: Settings) -> None:
    run_id = fresh_run_id("retry")

    async def body() -> None:
        async with replicas(settings) as (writers, _, other):
            first = (await other.create(LOSS, DEFINITIONS[0], run_id=run_id)).generation
            assert (await add(writers, run_id, "b0", batch(0), generation=first)).counted
            again = await add(writers, run_id, "b0", batch(0), generation=first)
            assert not again.counted and again.batches == 1  # a retry, in the same run
            await other.delete(run_id)
            second = (await other.create(LOSS, DEFINITIONS[0], run_id=run_id)).generation
            assert second != first
            with pytest.raises(NotFound, match="deleted and re-created since") as refused:
                await add(writers, run_id, "b0", batch(0), generation=first)
            assert refused.value.field == "generation"
            assert (await other.get(run_id)).aggregate.batches == 0
            with pytest.raises(InvalidArgument, match="generation: expected a string"):
                await add(writers, run_id, "b0", batch(0), generation=7)  # type: ignore[arg-type]
            answer = await add(writers, run_id, "b0", batch(0), generation=second)
            assert answer.counted and answer.batches == 1  # the new run's own batch b0
    run(body)


OLD_SQLITE_RUNS = """CREATE TABLE runs (id TEXT PRIMARY KEY, definition TEXT NOT NULL,
    state TEXT NOT NULL, signature TEXT, batches INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL, updated REAL NOT NULL)"""
"""The runs table as lossd wrote it before runs had generations."""


def test_runs_stored_before_generations_are_generation_empty(settings: Settings) -> None:
    run_id = fresh_run_id("older")
    definition = ('{"expected_batches":0,"loss":"cross_entropy",'
                  '"options":{"reduction":"mean"},"tensors":{}}')
    if settings.runs_store == "sqlite":
        with closing(sqlite3.connect(Path(settings.runs_dir) / "runs.sqlite3")) as db, db:
            db.execute(OLD_SQLITE_RUNS)
            db.execute("INSERT INTO runs (id, definition, state, created, updated) "
                       "VALUES (?, ?, 'open', 1.0, 1.0)", (run_id, definition))
    else:
        with redis.Redis.from_url(settings.redis_url) as client:
            client.hset(f"lossd:run:{{{run_id}}}", mapping={
                "definition": definition, "state": "open", "batches": 0, "created": 1.0,
                "updated": 1.0})

    async def body() -> None:
        async with replicas(settings) as (writers, _, other):
            assert (await other.get(run_id)).generation == ""
            assert (await add(writers, run_id, "b0", batch(0))).counted
            with pytest.raises(NotFound, match="re-created since"):
                await add(writers, run_id, "b1", batch(1), generation="0123456789abcdef")
            view = await other.get(run_id)
            assert view.aggregate.batches == 1
            assert float(view.aggregate.value) == pytest.approx(
                reference([0], DEFINITIONS[0]), rel=1e-12)
            await other.delete(run_id)
    run(body)


@dataclass
class Tally:
    """What the writers were told."""

    counted: set[int] = field(default_factory=set)  # acknowledged batch ids
    refused: list[str] = field(default_factory=list)  # NOT_FOUND / FAILED_PRECONDITION
    wrong: list[str] = field(default_factory=list)  # refusals a valid batch must never get
    since_created: int = 0  # batches counted since the current run was created

    def __post_init__(self) -> None:
        self.changed = asyncio.Condition()
        self.failed = asyncio.Event()  # a valid batch was refused

    async def ack(self, i: int) -> None:
        """Batch ``i`` was counted."""
        async with self.changed:
            self.counted.add(i)
            self.since_created += 1
            self.changed.notify_all()

    async def refused_wrongly(self, refusal: InvalidArgument) -> None:
        """A valid batch was refused (the run took another run's signature)."""
        async with self.changed:
            self.wrong.append(str(refusal))
            self.failed.set()
            self.changed.notify_all()

    async def created(self, create: Awaitable[object]) -> None:
        """Create the run; count its batches from now on."""
        async with self.changed:
            await create
            self.since_created = 0

    async def wait_for_batches(self, count: int, stored: Callable[[], Awaitable[int]]) -> None:
        """Until the current run holds ``count`` batches (acknowledgements wake the check,
        ``stored`` says how many the run holds); fails at once on a wrong refusal."""
        while True:
            async with self.changed:
                await self.changed.wait_for(
                    lambda: self.since_created >= count or bool(self.wrong))
                assert not self.wrong, f"a valid batch was refused: {self.wrong[0]}"
                self.since_created = await stored()  # an acknowledgement may be the last run's
                if self.since_created >= count:
                    return

    async def unless_failed(self, waiting: Awaitable[object]) -> None:
        """Wait for ``waiting``; fail at once on a wrong refusal instead."""
        tasks = [asyncio.ensure_future(waiting), asyncio.ensure_future(self.failed.wait())]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            task.cancel()
        assert not self.wrong, f"a valid batch was refused: {self.wrong[0]}"


def test_concurrent_recreation_never_moves_a_batch_between_runs(settings: Settings) -> None:
    """Writers add batches to whatever run holds the id (as a client that does not name the
    generation), retriers name the generation they read and send each batch twice and an older
    one again, while the run is re-created, alternating its options, ``generations`` times."""
    run_id = fresh_run_id("race")
    generations, writer_count, retrier_count = 8, 4, 3

    async def body() -> None:
        tally = Tally()
        ids = itertools.count()
        stop = asyncio.Event()
        runs: list[tuple[dict[str, Any], list[int], float, int]] = []

        async with replicas(settings) as (writers, gate, other):
            async def writer(name: str) -> None:
                while not stop.is_set():
                    i = next(ids)
                    try:
                        answer = await add(writers, run_id, f"b{i}", batch(i), worker=name)
                    except (NotFound, FailedPrecondition) as refusal:
                        tally.refused.append(str(refusal))
                        await asyncio.sleep(0)  # let the other tasks in (no waiting)
                        continue
                    except InvalidArgument as refusal:
                        await tally.refused_wrongly(refusal)
                        continue
                    assert answer.counted
                    await tally.ack(i)

            async def retrier(name: str) -> None:
                """Sends each batch for the generation it read, sends it again at once, and
                re-sends an older acknowledged one: a retry never counts twice, and never in
                another run than the one it was acknowledged in."""
                acked: list[tuple[int, str]] = []
                while not stop.is_set():
                    try:
                        generation = (await writers.get(run_id)).generation
                    except NotFound:
                        await asyncio.sleep(0)  # let the other tasks in (no waiting)
                        continue
                    i = next(ids)
                    for j, attempt in [(i, generation), (i, generation), *acked[-3:-2]]:
                        try:
                            answer = await add(writers, run_id, f"b{j}", batch(j),
                                               generation=attempt, worker=name)
                        except (NotFound, FailedPrecondition) as refusal:
                            tally.refused.append(str(refusal))
                            break
                        except InvalidArgument as refusal:
                            await tally.refused_wrongly(refusal)
                            break
                        if answer.counted:
                            assert (j, attempt) not in acked, f"b{j} counted twice"
                            acked.append((j, attempt))
                            await tally.ack(j)

            async def stored() -> int:
                return (await other.get(run_id)).aggregate.batches

            async def recreate() -> None:
                for k in range(generations):
                    options = DEFINITIONS[k % 2]
                    await tally.created(other.create(LOSS, options, run_id=run_id))
                    if k:
                        gate.release()  # the batch held under the previous run goes on
                    await tally.wait_for_batches(5, stored)
                    gate.hold()
                    # a writer's batch, validated and computed, waits to be written
                    await tally.unless_failed(gate.held.wait())
                    await other.finish(run_id)
                    view = await other.get(run_id)
                    snapshot = await other.store.load(run_id)
                    assert snapshot is not None
                    runs.append((options, [int(b.batch_id[1:]) for b in snapshot.batches],
                                 float(view.aggregate.value), view.aggregate.batches))
                    await other.delete(run_id)
                stop.set()
                gate.release()

            await asyncio.gather(recreate(), *(writer(f"w{j}") for j in range(writer_count)),
                                 *(retrier(f"r{j}") for j in range(retrier_count)))

        assert not tally.wrong, tally.wrong[:3]
        seen = [i for _, ids_, _, _ in runs for i in ids_]
        assert len(seen) == len(set(seen)), "a batch was counted in two runs"
        assert set(seen) == tally.counted
        for options, ids_, value, count in runs:
            assert count == len(ids_) >= 5
            assert value == pytest.approx(reference(ids_, options), rel=1e-12, abs=1e-15)
        assert sum("re-created" in r for r in tally.refused) >= generations - 1
    run(body)


@pytest.fixture(scope="module")
def lossd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("lossd-generations"))
    yield running
    assert running.terminate() == 0, running.log()


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_both_transports_tie_a_batch_to_its_generation(lossd: RunningServer,
                                                       transport: str) -> None:
    run_id = f"generations-{transport}"
    client = Client(lossd.url) if transport == "rest" else GrpcClient(lossd.grpc_target)
    with client:
        first = client.create_run(LOSS, run_id=run_id, **DEFINITIONS[0])["generation"]
        assert re.fullmatch("[0-9a-f]{16}", first)
        assert client.add_batch(run_id, "b0", generation=first, **batch(0))["counted"]
        client.delete_run(run_id)
        second = client.create_run(LOSS, run_id=run_id, **DEFINITIONS[1])["generation"]
        assert second != first and client.run(run_id)["generation"] == second
        with pytest.raises(NotFound, match="deleted and re-created since") as refused:
            client.add_batch(run_id, "b0", generation=first, **batch(0))
        assert refused.value.field == "generation"
        assert refused.value.status == (404 if transport == "rest" else None)
        assert client.add_batch(run_id, "b1", generation=second, **batch(1))["counted"]
        assert client.add_batch(run_id, "b2", **batch(2))["counted"]  # the current run
        run = client.run(run_id)
        listed = [r for r in client.list_runs(limit=100)["runs"] if r["run_id"] == run_id]
        assert [r["generation"] for r in listed] == [second]
        assert run["aggregate"]["batches"] == 2
        assert run["aggregate"]["value"] == pytest.approx(reference([1, 2], DEFINITIONS[1]),
                                                          rel=1e-12)
        client.delete_run(run_id)


def test_rest_refuses_a_generation_that_is_not_a_string(lossd: RunningServer) -> None:
    run_id = "generations-typed"
    assert httpx.post(f"{lossd.url}/v1/runs", json={"loss": "mse", "run_id": run_id}
                      ).status_code == 201
    body = {"inputs": {"input": [1.0, 2.0], "target": [0.0, 1.0]}, "generation": 5}
    r = httpx.put(f"{lossd.url}/v1/runs/{run_id}/batches/b0", json=body)
    assert r.status_code == 400 and r.json()["error"]["field"] == "generation", r.text
    r = httpx.put(f"{lossd.url}/v1/runs/{run_id}/batches/b0", json={**body, "generation": None})
    assert r.status_code == 201, r.text  # null: the current generation
