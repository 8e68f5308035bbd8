"""Sync state in Redis: key `bugsink:synced:{uuid}` in DB 15, the seed's JSON as value."""

from __future__ import annotations

from collections.abc import AsyncIterator

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from bugsink_sync.state.base import KEY_PREFIX, META_PREFIX, StateError, SyncRecord

_FIX = "check REDIS_URL and that Redis is running (or unset REDIS_URL to use an SQLite file)"


class RedisStore:
    """The seed's store. Records written by the Node service are read as they are."""

    def __init__(self, client: aioredis.Redis, db: int) -> None:
        self._redis = client
        self.description = f"Redis DB {db}"

    @classmethod
    def from_url(cls, url: str, db: int) -> RedisStore:
        """Connect lazily; the `db` setting wins over a DB number in the URL."""
        client = aioredis.Redis.from_url(url, db=db, socket_timeout=10, socket_connect_timeout=5)
        return cls(client, db)

    def _fail(self, action: str, exc: RedisError) -> StateError:
        return StateError(f"Redis: {action} in {self.description} failed ({exc}). Fix: {_FIX}")

    async def get(self, issue_uuid: str) -> SyncRecord | None:
        """The record of a Bugsink issue, if it was synced."""
        try:
            raw = await self._redis.get(KEY_PREFIX + issue_uuid)
        except RedisError as exc:
            raise self._fail("reading", exc) from exc
        return (
            None
            if raw is None
            else SyncRecord.from_json(raw, f"Redis key {KEY_PREFIX}{issue_uuid}")
        )

    async def put(self, issue_uuid: str, record: SyncRecord) -> None:
        """Record (or overwrite) the mapping of a Bugsink issue."""
        try:
            await self._redis.set(KEY_PREFIX + issue_uuid, record.to_json())
        except RedisError as exc:
            raise self._fail("writing", exc) from exc

    async def delete(self, issue_uuid: str) -> bool:
        """Forget a mapping; True if there was one."""
        try:
            return bool(await self._redis.delete(KEY_PREFIX + issue_uuid))
        except RedisError as exc:
            raise self._fail("deleting", exc) from exc

    async def count(self) -> int:
        """How many issues are recorded (a SCAN: other keys may share the DB)."""
        return len([key async for key in self._keys()])

    async def items(self) -> AsyncIterator[tuple[str, SyncRecord]]:
        """Every (uuid, record)."""
        async for key in self._keys():
            record = await self.get(key)
            if record is not None:
                yield key, record

    async def get_meta(self, name: str) -> str | None:
        """A small named value kept beside the records (e.g. the last run)."""
        try:
            raw = await self._redis.get(META_PREFIX + name)
        except RedisError as exc:
            raise self._fail("reading", exc) from exc
        return None if raw is None else (raw.decode() if isinstance(raw, bytes) else str(raw))

    async def set_meta(self, name: str, value: str) -> None:
        """Store a small named value."""
        try:
            await self._redis.set(META_PREFIX + name, value)
        except RedisError as exc:
            raise self._fail("writing", exc) from exc

    async def _keys(self) -> AsyncIterator[str]:
        try:
            async for key in self._redis.scan_iter(match=KEY_PREFIX + "*", count=500):
                yield (key.decode() if isinstance(key, bytes) else str(key))[len(KEY_PREFIX) :]
        except RedisError as exc:
            raise self._fail("listing keys", exc) from exc

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._redis.aclose()
