"""Both state stores, the real Redis and a real SQLite file, through one interface."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from bugsink_sync.state import (
    KEY_PREFIX,
    RedisStore,
    SqliteStore,
    StateError,
    StateStore,
    SyncRecord,
)

REDIS_URL = "redis://127.0.0.1:6379"
TEST_DB = 14  # not the production DB 15


@pytest.fixture(params=["redis", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StateStore]:
    if request.param == "redis":
        client = aioredis.Redis.from_url(REDIS_URL, db=TEST_DB)
        await client.flushdb()
        await client.aclose()
        s: StateStore = RedisStore.from_url(REDIS_URL, TEST_DB)
    else:
        s = SqliteStore(tmp_path / "deep" / "state.sqlite3")
    yield s
    await s.aclose()


async def test_put_get_count_items_delete(store: StateStore) -> None:
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    rec = SyncRecord(42, datetime(2026, 1, 17, 10, 30, tzinfo=UTC), "shop", "[TypeError] ü")
    assert await store.get(first) is None
    await store.put(first, rec)
    await store.put(second, SyncRecord(43, rec.synced_at, "shop", "b"))
    assert await store.get(first) == rec
    assert await store.count() == 2
    assert sorted([u async for u, _ in store.items()]) == sorted([first, second])
    assert await store.delete(first) is True
    assert await store.delete(first) is False
    assert await store.count() == 1


async def test_redis_value_is_the_seeds_json() -> None:
    store = RedisStore.from_url(REDIS_URL, TEST_DB)
    key = str(uuid.uuid4())
    await store.put(key, SyncRecord(42, datetime(2026, 1, 17, 10, 30, tzinfo=UTC), "p", "t"))
    raw = aioredis.Redis.from_url(REDIS_URL, db=TEST_DB, decode_responses=True)
    assert await raw.get(KEY_PREFIX + key) == (
        '{"gitea_issue_number": 42, "synced_at": "2026-01-17T10:30:00Z", '
        '"project": "p", "title": "t"}'
    )
    await raw.set(KEY_PREFIX + "broken", "not json")
    with pytest.raises(StateError, match="not a sync record"):
        await store.get("broken")
    await raw.aclose()
    await store.aclose()


async def test_unreachable_redis_is_a_clear_state_error() -> None:
    store = RedisStore.from_url("redis://127.0.0.1:1", 15)
    with pytest.raises(StateError, match=r"Redis: reading in Redis DB 15 failed.*REDIS_URL"):
        await store.get("x")
    await store.aclose()


async def test_read_only_sqlite_never_creates_the_file(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    store = SqliteStore(path, read_only=True)
    assert await store.get("x") is None
    assert await store.count() == 0
    with pytest.raises(StateError, match="read-only"):
        await store.put("x", SyncRecord(1, datetime.now(UTC), "p", "t"))
    await store.aclose()
    assert not path.exists()
