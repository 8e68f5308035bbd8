"""Sync state: one interface (`StateStore`), stored in Redis or in an SQLite file."""

from bugsink_sync.state.base import KEY_PREFIX, StateError, StateStore, SyncRecord, iso_utc
from bugsink_sync.state.redis import RedisStore
from bugsink_sync.state.sqlite import SqliteStore

__all__ = [
    "KEY_PREFIX",
    "RedisStore",
    "SqliteStore",
    "StateError",
    "StateStore",
    "SyncRecord",
    "iso_utc",
]
