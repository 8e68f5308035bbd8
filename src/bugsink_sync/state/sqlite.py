"""Sync state in an embedded SQLite file, for users without Redis.

Same content as the Redis store: one row per Bugsink issue UUID with the seed's JSON, plus
intents and service facts. Calls take microseconds on a local file, so they run inline on
the event loop. The run lock is an OS file lock beside the database: it is released the
moment its holder exits, even by SIGKILL.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import sqlite3
import time
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import IO

from bugsink_sync.state.base import (
    CorruptRecord,
    LockBusy,
    StateError,
    SyncRecord,
    holder_id,
    intent_json,
    intent_since,
)

log = logging.getLogger("bugsink_sync.state")

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS synced (issue_uuid TEXT PRIMARY KEY, value TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS pending (issue_uuid TEXT PRIMARY KEY, value TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);"
)


class FileLock:
    """The held run lock (never lost while the process lives)."""

    def check(self) -> None:
        """An OS file lock cannot be taken away from a live holder."""


class SqliteStore:
    """A file store. `read_only` never creates or changes the file (for dry runs)."""

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        self.path = path
        self.description = f"SQLite file {path}"
        self._db: sqlite3.Connection | None = None
        try:
            self._db = self._open(path, read_only)
        except (sqlite3.Error, OSError) as exc:
            raise StateError(
                f"SQLite: cannot open {path} ({exc}). Fix: make its folder writable or set "
                "BUGSINK_SYNC_SQLITE_PATH to a writable path"
            ) from exc

    @staticmethod
    def _open(path: Path, read_only: bool) -> sqlite3.Connection | None:
        if read_only:
            if not path.exists():
                return None  # nothing synced yet, and a dry run must not create the file
            return sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, isolation_level=None, timeout=30)
        db.execute("PRAGMA journal_mode=WAL")
        db.executescript(_SCHEMA)
        return db

    def _query(self, sql: str, *args: str) -> list[tuple[str, ...]]:
        if self._db is None:
            return []
        try:
            return self._db.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise StateError(f"SQLite: {self.path}: {exc}") from exc

    def _writable(self) -> sqlite3.Connection:
        if self._db is None:
            raise StateError(f"SQLite: {self.path} is open read-only")
        return self._db

    def _upsert(self, table: str, key_column: str, key: str, value: str) -> None:
        self._writable()
        self._query(
            f"INSERT INTO {table} ({key_column}, value) VALUES (?, ?) "  # noqa: S608 (fixed names)
            f"ON CONFLICT({key_column}) DO UPDATE SET value = excluded.value",
            key,
            value,
        )

    async def get(self, issue_uuid: str) -> SyncRecord | None:
        """The record of a Bugsink issue, if it was synced."""
        rows = self._query("SELECT value FROM synced WHERE issue_uuid = ?", issue_uuid)
        where = f"{self.path} row {issue_uuid}"
        return SyncRecord.from_json(rows[0][0], where) if rows else None

    async def put(self, issue_uuid: str, record: SyncRecord) -> None:
        """Record (or overwrite) the mapping of a Bugsink issue."""
        self._upsert("synced", "issue_uuid", issue_uuid, record.to_json())

    async def delete(self, issue_uuid: str) -> bool:
        """Forget a mapping (readable or not); True if there was one."""
        existed = bool(self._query("SELECT 1 FROM synced WHERE issue_uuid = ?", issue_uuid))
        self._query("DELETE FROM synced WHERE issue_uuid = ?", issue_uuid)
        return existed

    async def count(self) -> int:
        """How many issues are recorded."""
        rows = self._query("SELECT COUNT(*) FROM synced")
        return int(rows[0][0]) if rows else 0

    async def items(self) -> AsyncIterator[tuple[str, SyncRecord]]:
        """Every (uuid, record); values that are not records are logged and passed over."""
        for uuid, value in self._query("SELECT issue_uuid, value FROM synced ORDER BY issue_uuid"):
            try:
                yield uuid, SyncRecord.from_json(value, f"{self.path} row {uuid}")
            except CorruptRecord as exc:
                log.warning("%s", exc)

    async def mark_pending(self, issue_uuid: str, project: str) -> None:
        """Note that a Gitea issue is about to be created for this Bugsink issue."""
        self._upsert("pending", "issue_uuid", issue_uuid, intent_json(project))

    async def pending(self) -> dict[str, datetime]:
        """Bugsink issue UUIDs whose creation may or may not have happened, and since when."""
        rows = self._query("SELECT issue_uuid, value FROM pending")
        return {uuid: intent_since(value) for uuid, value in rows}

    async def complete(self, issue_uuid: str, record: SyncRecord) -> None:
        """Record the mapping and clear the intent in one transaction."""
        db = self._writable()
        try:
            with db:  # BEGIN … COMMIT (or ROLLBACK on error)
                db.execute("BEGIN")
                db.execute(
                    "INSERT INTO synced (issue_uuid, value) VALUES (?, ?) "
                    "ON CONFLICT(issue_uuid) DO UPDATE SET value = excluded.value",
                    (issue_uuid, record.to_json()),
                )
                db.execute("DELETE FROM pending WHERE issue_uuid = ?", (issue_uuid,))
        except sqlite3.Error as exc:
            raise StateError(f"SQLite: {self.path}: {exc}") from exc

    async def clear_pending(self, issue_uuid: str) -> None:
        """Drop an intent."""
        self._writable()
        self._query("DELETE FROM pending WHERE issue_uuid = ?", issue_uuid)

    @contextlib.asynccontextmanager
    async def lock(self, wait_seconds: float) -> AsyncIterator[FileLock]:
        """Hold an exclusive lock on `<file>.lock`; the OS frees it if this process dies."""
        lock_path = self.path.with_name(self.path.name + ".lock")
        try:
            handle = lock_path.open("a+")
        except OSError as exc:
            raise StateError(f"SQLite: cannot open the lock file {lock_path} ({exc})") from exc
        try:
            await self._acquire(handle, lock_path, wait_seconds)
            handle.seek(0)
            handle.truncate()
            handle.write(holder_id())
            handle.flush()
            yield FileLock()
        finally:
            handle.close()  # closing releases the lock

    @staticmethod
    async def _acquire(handle: IO[str], lock_path: Path, wait_seconds: float) -> None:
        fd = handle.fileno()
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    handle.seek(0)
                    holder = handle.read().strip() or "?"
                    raise LockBusy(
                        f"SQLite: another sync holds the run lock {lock_path} ({holder}); "
                        f"waited {wait_seconds:.0f} s. Fix: let it finish, then run again"
                    ) from None
                await asyncio.sleep(0.25)

    async def get_meta(self, name: str) -> str | None:
        """A small named value kept beside the records (e.g. the last run)."""
        rows = self._query("SELECT value FROM meta WHERE name = ?", name)
        return rows[0][0] if rows else None

    async def set_meta(self, name: str, value: str) -> None:
        """Store a small named value."""
        self._upsert("meta", "name", name, value)

    async def aclose(self) -> None:
        """Close the file."""
        if self._db is not None:
            self._db.close()
            self._db = None
