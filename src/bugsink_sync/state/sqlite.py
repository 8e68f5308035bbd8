"""Sync state in an embedded SQLite file, for users without Redis.

Same content as the Redis store: one row per Bugsink issue UUID with the seed's JSON. Calls
are a few microseconds on a local file, so they run inline on the event loop.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

from bugsink_sync.state.base import StateError, SyncRecord

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS synced (issue_uuid TEXT PRIMARY KEY, value TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);"
)


class SqliteStore:
    """A file store. `read_only` never creates or changes the file (for dry runs)."""

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        self.path = path
        self.description = f"SQLite file {path}"
        self._db: sqlite3.Connection | None = None
        try:
            self._db = self._open(path, read_only)
        except sqlite3.Error as exc:
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

    async def get(self, issue_uuid: str) -> SyncRecord | None:
        """The record of a Bugsink issue, if it was synced."""
        rows = self._query("SELECT value FROM synced WHERE issue_uuid = ?", issue_uuid)
        return SyncRecord.from_json(rows[0][0], f"{self.path} row {issue_uuid}") if rows else None

    async def put(self, issue_uuid: str, record: SyncRecord) -> None:
        """Record (or overwrite) the mapping of a Bugsink issue."""
        self._upsert("synced", "issue_uuid", issue_uuid, record.to_json())

    def _upsert(self, table: str, key_column: str, key: str, value: str) -> None:
        if self._db is None:
            raise StateError(f"SQLite: {self.path} is open read-only")
        self._query(
            f"INSERT INTO {table} ({key_column}, value) VALUES (?, ?) "  # noqa: S608 (fixed names)
            f"ON CONFLICT({key_column}) DO UPDATE SET value = excluded.value",
            key,
            value,
        )

    async def get_meta(self, name: str) -> str | None:
        """A small named value kept beside the records (e.g. the last run)."""
        rows = self._query("SELECT value FROM meta WHERE name = ?", name)
        return rows[0][0] if rows else None

    async def set_meta(self, name: str, value: str) -> None:
        """Store a small named value."""
        self._upsert("meta", "name", name, value)

    async def delete(self, issue_uuid: str) -> bool:
        """Forget a mapping; True if there was one."""
        existed = await self.get(issue_uuid) is not None
        self._query("DELETE FROM synced WHERE issue_uuid = ?", issue_uuid)
        return existed

    async def count(self) -> int:
        """How many issues are recorded."""
        rows = self._query("SELECT COUNT(*) FROM synced")
        return int(rows[0][0]) if rows else 0

    async def items(self) -> AsyncIterator[tuple[str, SyncRecord]]:
        """Every (uuid, record)."""
        for uuid, value in self._query("SELECT issue_uuid, value FROM synced ORDER BY issue_uuid"):
            yield uuid, SyncRecord.from_json(value, f"{self.path} row {uuid}")

    async def aclose(self) -> None:
        """Close the file."""
        if self._db is not None:
            self._db.close()
            self._db = None
