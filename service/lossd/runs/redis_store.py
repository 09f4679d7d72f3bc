"""The shared run store: Redis, for several lossd replicas serving the same runs.

A run is two keys with one hash tag (so a Redis Cluster keeps them on one shard):
``lossd:run:{ID}`` (hash: definition, generation, state, signature, batch count, times) and
``lossd:run:{ID}:batches`` (hash: batch id -> record). Every change of a run is one Lua
script, which Redis runs atomically: adding checks the run's generation (the one the batch was
validated against: a run deleted and re-created meanwhile is another), its state, the batch id
guard (``HGET`` before ``HSET``), the signature and the expected count, and then writes the
record and the counter together, so any number of writers in any number of processes count
each batch id exactly once. Retention is a TTL on both keys, renewed by every write.
Durability of acknowledged batches across a *Redis* restart is Redis's own (``appendonly yes``,
``appendfsync always`` for the strictest).

One more key indexes the runs for listing: ``lossd:runs`` (sorted set: run id scored by its
creation time; on another shard than the runs, so not in their scripts). Its entry is written
before the run and removed after it: an entry without its run (left by a crash, or by the TTL)
is skipped when listing, and removed once it is older than the retention. Runs created by a
lossd older than the index are not listed (re-creating one with its definition lists it).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Coroutine
from typing import Any, Concatenate, ParamSpec, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..errors import Unavailable
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

CREATE = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'definition', ARGV[1], 'generation', ARGV[5], 'state', ARGV[4],
             'batches', 0, 'created', ARGV[2], 'updated', ARGV[2])
  if tonumber(ARGV[3]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
end
return {redis.call('HGET', KEYS[1], 'definition'),
        redis.call('HGET', KEYS[1], 'generation') or ''}
"""

# KEYS: run, batches. ARGV: batch id, record, digest, signature key, signature json,
# expected batches, now, ttl ms, open state, generation. A run written before generations
# existed has none: it is generation ''.
ADD = """
if redis.call('EXISTS', KEYS[1]) == 0 then return {'not_found', 0, ''} end
local batches = tonumber(redis.call('HGET', KEYS[1], 'batches'))
if (redis.call('HGET', KEYS[1], 'generation') or '') ~= ARGV[10] then
  return {'replaced', batches, ''}
end
local existing = redis.call('HGET', KEYS[2], ARGV[1])
if existing then
  if cjson.decode(existing)['d'] == ARGV[3] then return {'duplicate', batches, ''} end
  return {'conflict', batches, ''}
end
if redis.call('HGET', KEYS[1], 'state') ~= ARGV[9] then return {'finished', batches, ''} end
local signature = redis.call('HGET', KEYS[1], 'signature')
if signature and redis.call('HGET', KEYS[1], 'sigkey') ~= ARGV[4] then
  return {'mismatch', batches, signature}
end
local expected = tonumber(ARGV[6])
if expected > 0 and batches >= expected then return {'full', batches, ''} end
if not signature then redis.call('HSET', KEYS[1], 'sigkey', ARGV[4], 'signature', ARGV[5]) end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
batches = redis.call('HINCRBY', KEYS[1], 'batches', 1)
redis.call('HSET', KEYS[1], 'updated', ARGV[7])
if tonumber(ARGV[8]) > 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[8])
  redis.call('PEXPIRE', KEYS[2], ARGV[8])
end
return {'counted', batches, ''}
"""

FINISH = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'state', ARGV[1], 'updated', ARGV[2])
if tonumber(ARGV[3]) > 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('PEXPIRE', KEYS[2], ARGV[3]) end
end
return 1
"""


INDEX = "lossd:runs"


P = ParamSpec("P")
T = TypeVar("T")
LOST = (RedisConnectionError, RedisTimeoutError, OSError)


def _reachable(method: Callable[Concatenate[RedisStore, P], Coroutine[Any, Any, T]]
               ) -> Callable[Concatenate[RedisStore, P], Coroutine[Any, Any, T]]:
    """Redis out of reach (restarting, a connection dropped, the store closed by a drain) is
    :class:`Unavailable` (503 / UNAVAILABLE: clients retry), never an internal error. Every
    script is safe to repeat, so a dropped connection is first retried here."""
    @functools.wraps(method)
    async def call(store: RedisStore, /, *args: P.args, **kwargs: P.kwargs) -> T:
        if store._client is None:
            raise Unavailable("run store closed (the server is stopping)")
        try:
            return await method(store, *args, **kwargs)
        except LOST as exc:
            raise Unavailable(f"run store unavailable ({type(exc).__name__}: "
                              f"{str(exc)[:200]})") from None
    return call


def _keys(run_id: str) -> list[str]:
    run = f"lossd:run:{{{run_id}}}"
    return [run, f"{run}:batches"]


class RedisStore:
    """Runs in the Redis at ``url``; keys expire ``retention_s`` after their last write
    (0: never)."""

    def __init__(self, url: str, retention_s: float) -> None:
        self.url = url
        self.ttl_ms = int(retention_s * 1000)
        self._client: Any = None

    async def open(self) -> None:
        """Connect (checked with a PING) and register the Lua scripts."""
        client = aioredis.from_url(  # a stale pooled connection is retried at once
            self.url, decode_responses=True, retry=Retry(ExponentialBackoff(cap=0.5), 3),
            retry_on_error=[RedisConnectionError, RedisTimeoutError])
        try:
            await client.ping()
        except BaseException:
            await client.aclose()
            raise
        self._client = client
        self._create = self._client.register_script(CREATE)
        self._add = self._client.register_script(ADD)
        self._finish = self._client.register_script(FINISH)

    async def close(self) -> None:
        """Close the connection pool."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    @_reachable
    async def create(self, run_id: str, definition: str, generation: str, now: float
                     ) -> tuple[str, str]:
        """:meth:`RunStore.create`, as one Lua script, after the index entry (``NX``: a retry
        keeps the first creation time)."""
        await self._client.zadd(INDEX, {run_id: now}, nx=True)
        stored, stored_generation = await self._create(
            keys=_keys(run_id)[:1], args=[definition, repr(now), self.ttl_ms, OPEN, generation])
        return stored, stored_generation

    @_reachable
    async def add(self, run_id: str, generation: str, record: BatchRecord,
                  signature: Signature, expected_batches: int, now: float) -> AddOutcome:
        """:meth:`RunStore.add`: the generation, every check, the record and the counter in
        one Lua script."""
        added, batches, stored = await self._add(
            keys=_keys(run_id),
            args=[record.batch_id, record.encode(), record.digest, signature.key,
                  encode_signature(signature), expected_batches, repr(now), self.ttl_ms, OPEN,
                  generation])
        fixed = decode_signature(stored)
        return AddOutcome(Added(added), int(batches), fixed.text if fixed else "")

    @_reachable
    async def look(self, run_id: str, batch_id: str) -> Look:
        """:meth:`RunStore.look`, in one MULTI/EXEC read."""
        run_key, batches_key = _keys(run_id)
        async with self._client.pipeline(transaction=True) as pipe:  # one consistent read
            record, (state, generation, batches, signature) = await pipe.hget(
                batches_key, batch_id).hmget(
                run_key, ["state", "generation", "batches", "signature"]).execute()
        digest = None if record is None else BatchRecord.decode(batch_id, record).digest
        return Look(None if state is None else generation or "", digest, int(batches or 0),
                    decode_signature(signature))

    @_reachable
    async def load(self, run_id: str) -> RunSnapshot | None:
        """:meth:`RunStore.load`, in one MULTI/EXEC read."""
        run_key, batches_key = _keys(run_id)
        async with self._client.pipeline(transaction=True) as pipe:  # one consistent read
            run, batches = await pipe.hgetall(run_key).hgetall(batches_key).execute()
        if not run:
            return None
        return RunSnapshot(run_id, run["definition"], run.get("generation", ""), run["state"],
                           decode_signature(run.get("signature")), float(run["created"]),
                           float(run["updated"]),
                           [BatchRecord.decode(b, r) for b, r in batches.items()])

    @_reachable
    async def list_runs(self, *, state: str | None, after: Cursor | None, offset: int,
                        limit: int) -> list[RunSnapshot]:
        """:meth:`RunStore.list_runs`: walks the index newest first in chunks, reads each
        entry's state in one pipeline, then loads the runs of the page (each read as one)."""
        found: list[RunSnapshot] = []
        high = "+inf" if after is None else repr(after.created)  # repr: the exact double
        skip, start, chunk = offset, 0, max(2 * limit, 64)
        stale = time.time() - max(self.ttl_ms / 1000, 60.0)
        while len(found) < limit:
            entries = await self._client.zrevrangebyscore(INDEX, high, "-inf", start=start,
                                                          num=chunk, withscores=True)
            if not entries:
                break
            start += len(entries)
            ids = [(run_id, created) for run_id, created in entries
                   if after is None or after.after(created, run_id)]
            async with self._client.pipeline(transaction=False) as pipe:
                for run_id, _ in ids:
                    pipe.hget(_keys(run_id)[0], "state")
                states = await pipe.execute()
            gone = [run_id for (run_id, created), s in zip(ids, states)
                    if s is None and created < stale]
            if gone:  # expired (TTL) or left by a crash between index and run
                await self._client.zrem(INDEX, *gone)
            for (run_id, _), run_state in zip(ids, states):
                if run_state is None or state is not None and run_state != state:
                    continue
                if skip:
                    skip -= 1
                    continue
                snapshot = await self.load(run_id)
                if snapshot is not None:
                    found.append(snapshot)
                if len(found) == limit:
                    break
        return found

    @_reachable
    async def finish(self, run_id: str, now: float) -> bool:
        """:meth:`RunStore.finish`, as one Lua script (which also renews the TTL)."""
        return bool(await self._finish(keys=_keys(run_id), args=[FINISHED, repr(now),
                                                                 self.ttl_ms]))

    @_reachable
    async def delete(self, run_id: str) -> bool:
        """:meth:`RunStore.delete`: both keys in one DEL, then the index entry."""
        deleted = bool(await self._client.delete(*_keys(run_id)))
        await self._client.zrem(INDEX, run_id)
        return deleted

    @_reachable
    async def sweep(self, now: float) -> int:
        """Nothing to do: :meth:`RunStore.sweep`'s work is done by the keys' TTL."""
        return 0  # keys expire on their own (TTL renewed by every write)
