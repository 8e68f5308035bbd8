"""Sync state: one interface (`StateStore`), stored in Redis or in an SQLite file."""

from bugsink_sync.state.base import (
    INITIALISED,
    KEY_PREFIX,
    PENDING_PREFIX,
    CorruptRecord,
    LockBusy,
    RunLock,
    StateError,
    StateStore,
    SyncRecord,
    iso_utc,
)
from bugsink_sync.state.redis import RedisStore
from bugsink_sync.state.sqlite import SqliteStore

__all__ = [
    "INITIALISED",
    "KEY_PREFIX",
    "PENDING_PREFIX",
    "CorruptRecord",
    "LockBusy",
    "RedisStore",
    "RunLock",
    "SqliteStore",
    "StateError",
    "StateStore",
    "SyncRecord",
    "iso_utc",
]
