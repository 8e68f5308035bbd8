"""Sync state in Redis: key `bugsink:synced:{uuid}` in DB 15, the seed's JSON as value.

Beside it: `bugsink:pending:{uuid}` intents, `bugsink-sync:*` service facts, and the run
lock `bugsink-sync:lock`, which expires unless its holder renews it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from datetime import datetime

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from bugsink_sync.state.base import (
    KEY_PREFIX,
    META_PREFIX,
    PENDING_PREFIX,
    CorruptRecord,
    LockBusy,
    StateError,
    SyncRecord,
    holder_id,
    intent_json,
    intent_since,
)

log = logging.getLogger("bugsink_sync.state")
_FIX = "check REDIS_URL and that Redis is running (or unset REDIS_URL to use an SQLite file)"
LOCK_KEY = META_PREFIX + "lock"
DEFAULT_LOCK_TTL_MS = 30_000
_IF_OURS = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call("
_RENEW = _IF_OURS + "'pexpire', KEYS[1], ARGV[2]) end return 0"
_RELEASE = _IF_OURS + "'del', KEYS[1]) end return 0"


class RedisLock:
    """The held run lock; a background task renews it every third of its lifetime."""

    def __init__(self, client: aioredis.Redis, value: str, ttl_ms: int) -> None:
        self._redis = client
        self._value = value
        self._ttl_ms = ttl_ms
        self.lost = False
        self._task = asyncio.create_task(self._renew())

    async def _renew(self) -> None:
        while not self.lost:
            await asyncio.sleep(self._ttl_ms / 3000)
            try:
                kept = await self._redis.eval(_RENEW, 1, LOCK_KEY, self._value, self._ttl_ms)
            except RedisError as exc:
                log.error("could not renew the sync lock: %s", exc)
                kept = 0
            if not kept:
                self.lost = True

    def check(self) -> None:
        """Raise StateError if the lock was lost."""
        if self.lost:
            raise StateError(
                "Redis: this sync lost its run lock (Redis did not answer in time). Fix: check "
                "Redis; the next run continues where this one stopped"
            )

    async def release(self) -> None:
        """Stop renewing and delete the lock if it is still ours."""
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        with contextlib.suppress(RedisError):
            await self._redis.eval(_RELEASE, 1, LOCK_KEY, self._value)


class RedisStore:
    """The seed's store. Records written by the Node service are read as they are."""

    def __init__(
        self, client: aioredis.Redis, db: int, lock_ttl_ms: int = DEFAULT_LOCK_TTL_MS
    ) -> None:
        self._redis = client
        self._lock_ttl_ms = lock_ttl_ms
        self.description = f"Redis DB {db}"

    @classmethod
    def from_url(cls, url: str, db: int, lock_ttl_ms: int = DEFAULT_LOCK_TTL_MS) -> RedisStore:
        """Connect lazily; the `db` setting wins over a DB number in the URL."""
        client = aioredis.Redis.from_url(url, db=db, socket_timeout=10, socket_connect_timeout=5)
        return cls(client, db, lock_ttl_ms)

    def _fail(self, action: str, exc: RedisError) -> StateError:
        return StateError(f"Redis: {action} in {self.description} failed ({exc}). Fix: {_FIX}")

    async def _get(self, key: str) -> str | None:
        try:
            raw = await self._redis.get(key)
        except RedisError as exc:
            raise self._fail("reading", exc) from exc
        return None if raw is None else (raw.decode() if isinstance(raw, bytes) else str(raw))

    async def _set(self, key: str, value: str) -> None:
        try:
            await self._redis.set(key, value)
        except RedisError as exc:
            raise self._fail("writing", exc) from exc

    async def _delete(self, key: str) -> bool:
        try:
            return bool(await self._redis.delete(key))
        except RedisError as exc:
            raise self._fail("deleting", exc) from exc

    async def get(self, issue_uuid: str) -> SyncRecord | None:
        """The record of a Bugsink issue, if it was synced."""
        raw = await self._get(KEY_PREFIX + issue_uuid)
        return (
            None
            if raw is None
            else SyncRecord.from_json(raw, f"Redis key {KEY_PREFIX}{issue_uuid}")
        )

    async def put(self, issue_uuid: str, record: SyncRecord) -> None:
        """Record (or overwrite) the mapping of a Bugsink issue."""
        await self._set(KEY_PREFIX + issue_uuid, record.to_json())

    async def delete(self, issue_uuid: str) -> bool:
        """Forget a mapping; True if there was one."""
        return await self._delete(KEY_PREFIX + issue_uuid)

    async def count(self) -> int:
        """How many issues are recorded (a SCAN: other keys may share the DB)."""
        return len([key async for key in self._keys(KEY_PREFIX)])

    async def items(self) -> AsyncIterator[tuple[str, SyncRecord]]:
        """Every (uuid, record); values that are not records are logged and passed over."""
        async for key in self._keys(KEY_PREFIX):
            try:
                record = await self.get(key)
            except CorruptRecord as exc:
                log.warning("%s", exc)
                continue
            if record is not None:
                yield key, record

    async def mark_pending(self, issue_uuid: str, project: str) -> None:
        """Note that a Gitea issue is about to be created for this Bugsink issue."""
        await self._set(PENDING_PREFIX + issue_uuid, intent_json(project))

    async def pending(self) -> dict[str, datetime]:
        """Bugsink issue UUIDs whose creation may or may not have happened, and since when."""
        found = {}
        async for key in self._keys(PENDING_PREFIX):
            found[key] = intent_since(await self._get(PENDING_PREFIX + key) or "")
        return found

    async def complete(self, issue_uuid: str, record: SyncRecord) -> None:
        """Record the mapping and clear the intent in one transaction."""
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.set(KEY_PREFIX + issue_uuid, record.to_json())
                pipe.delete(PENDING_PREFIX + issue_uuid)
                await pipe.execute()
        except RedisError as exc:
            raise self._fail("writing", exc) from exc

    async def clear_pending(self, issue_uuid: str) -> None:
        """Drop an intent."""
        await self._delete(PENDING_PREFIX + issue_uuid)

    @contextlib.asynccontextmanager
    async def lock(self, wait_seconds: float) -> AsyncIterator[RedisLock]:
        """Hold `bugsink-sync:lock` (SET NX with a 30 s expiry, renewed while held)."""
        token = json.dumps({"holder": holder_id(), "token": uuid.uuid4().hex})
        deadline = time.monotonic() + wait_seconds
        try:
            while not await self._redis.set(LOCK_KEY, token, nx=True, px=self._lock_ttl_ms):
                if time.monotonic() >= deadline:
                    raise LockBusy(await self._busy_message(wait_seconds))
                await asyncio.sleep(0.25)
        except RedisError as exc:
            raise self._fail("taking the run lock", exc) from exc
        held = RedisLock(self._redis, token, self._lock_ttl_ms)
        try:
            yield held
        finally:
            await held.release()

    async def _busy_message(self, waited: float) -> str:
        raw = await self._get(LOCK_KEY)
        try:
            holder = str(json.loads(raw or "{}").get("holder", "?"))
        except (ValueError, AttributeError):
            holder = "an unknown holder"
        return (
            f"Redis: another sync holds the run lock ({holder}); waited {waited:.0f} s. Fix: let "
            f"it finish (a crashed holder's lock expires within {self._lock_ttl_ms // 1000} s), "
            "then run again"
        )

    async def get_meta(self, name: str) -> str | None:
        """A small named value kept beside the records (e.g. the last run)."""
        return await self._get(META_PREFIX + name)

    async def set_meta(self, name: str, value: str) -> None:
        """Store a small named value."""
        await self._set(META_PREFIX + name, value)

    async def _keys(self, prefix: str) -> AsyncIterator[str]:
        try:
            async for key in self._redis.scan_iter(match=prefix + "*", count=500):
                yield (key.decode() if isinstance(key, bytes) else str(key))[len(prefix) :]
        except RedisError as exc:
            raise self._fail("listing keys", exc) from exc

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._redis.aclose()
