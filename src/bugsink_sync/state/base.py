"""The sync state: which Bugsink issue became which Gitea issue.

One interface, two stores (Redis DB 15 as in the seed, or an SQLite file for users without
Redis), holding the same JSON value per Bugsink issue UUID.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

KEY_PREFIX = "bugsink:synced:"
PENDING_PREFIX = "bugsink:pending:"  # intent written before a Gitea issue is created
META_PREFIX = "bugsink-sync:"  # Redis keys of small service facts, e.g. bugsink-sync:last_run
INITIALISED = "initialised"  # meta key: set once the store has been used (see sync.py)


class StateError(Exception):
    """The state store cannot be read or written; the message names the store and the fix."""


class CorruptRecord(StateError):
    """One stored value is not a sync record: that issue fails, the run goes on."""


class LockBusy(StateError):
    """Another sync holds the run lock and did not let go in time."""


class RunLock(Protocol):
    """The run lock while it is held. `check()` raises StateError once it has been lost
    (e.g. Redis went away and the lock expired), so the holder stops creating issues."""

    def check(self) -> None:
        """Raise StateError if this process no longer holds the lock."""
        ...


def holder_id() -> str:
    """Who holds a lock: host, process id and since when, for messages."""
    return f"{socket.gethostname()} pid {os.getpid()} since {iso_utc(datetime.now(UTC))}"


@dataclass(frozen=True)
class SyncRecord:
    """The seed's value `{"gitea_issue_number", "synced_at", "project", "title"}`, plus, when
    they are set, what later runs did: `handled_at` (the last time the sync acted on the
    error), `backlinked` (Bugsink has a comment with the Gitea link), `gitea_closed` (two-way
    mode: the Gitea state the sync last acted on). Readers of the seed's format ignore them."""

    gitea_issue_number: int
    synced_at: datetime
    project: str
    title: str
    handled_at: datetime | None = None
    backlinked: bool = False
    gitea_closed: bool | None = None

    @property
    def last_handled(self) -> datetime:
        """When the sync last acted on this error: events after it are new. `synced_at` has
        whole seconds only (the seed's format), so without `handled_at` the second is
        rounded up: an event in the second of the sync itself is no regression."""
        return self.handled_at or self.synced_at + timedelta(seconds=1)

    def to_json(self) -> str:
        """The stored form; times as ISO 8601 UTC with a `Z`."""
        value: dict[str, Any] = {
            "gitea_issue_number": self.gitea_issue_number,
            "synced_at": iso_utc(self.synced_at),
            "project": self.project,
            "title": self.title,
        }
        if self.handled_at is not None:  # to the microsecond, as Bugsink's last_seen
            value["handled_at"] = self.handled_at.astimezone(UTC).isoformat().replace("+00:00", "Z")
        if self.backlinked:
            value["backlinked"] = True
        if self.gitea_closed is not None:
            value["gitea_closed"] = self.gitea_closed
        return json.dumps(value, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str | bytes, where: str = "the state store") -> SyncRecord:
        """Parse a stored value; a value that is not a record is a StateError naming `where`."""
        try:
            data: Any = json.loads(text)
            handled = data.get("handled_at")
            closed = data.get("gitea_closed")
            return cls(
                gitea_issue_number=int(data["gitea_issue_number"]),
                synced_at=_parse_time(data["synced_at"]),
                project=str(data.get("project", "")),
                title=str(data.get("title", "")),
                handled_at=_parse_time(handled) if handled else None,
                backlinked=bool(data.get("backlinked", False)),
                gitea_closed=None if closed is None else bool(closed),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise CorruptRecord(
                f"{where} holds a value that is not a sync record ({type(exc).__name__}: {exc}). "
                "Fix: inspect it; `bugsink-sync state forget UUID --yes` removes it"
            ) from None


def intent_json(project: str) -> str:
    """The stored intent: the project, and since when."""
    return json.dumps({"project": project, "since": iso_utc(datetime.now(UTC))})


def intent_since(value: str | bytes) -> datetime:
    """When an intent was written (long ago, if it cannot be read: settle it now)."""
    try:
        return _parse_time(json.loads(value)["since"])
    except (ValueError, KeyError, TypeError, AttributeError):
        return datetime.fromtimestamp(0, UTC)


def _parse_time(value: Any) -> datetime:
    moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def iso_utc(moment: datetime) -> str:
    """`2026-01-17T10:30:00Z`: seconds, UTC, explicit."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class StateStore(Protocol):
    """What the sync needs from a store. Implementations raise StateError on failure."""

    description: str

    async def get(self, issue_uuid: str) -> SyncRecord | None:
        """The record of a Bugsink issue, if it was synced."""
        ...

    async def put(self, issue_uuid: str, record: SyncRecord) -> None:
        """Record (or overwrite) the mapping of a Bugsink issue."""
        ...

    async def delete(self, issue_uuid: str) -> bool:
        """Forget a mapping; True if there was one."""
        ...

    async def count(self) -> int:
        """How many issues are recorded."""
        ...

    def items(self) -> AsyncIterator[tuple[str, SyncRecord]]:
        """Every (uuid, record), in no particular order."""
        ...

    async def mark_pending(self, issue_uuid: str, project: str) -> None:
        """Note, before creating its Gitea issue, that a Bugsink issue is being synced; until
        `complete` clears it, the outcome is unclear and must be reconciled, not repeated."""
        ...

    async def pending(self) -> dict[str, datetime]:
        """Bugsink issue UUIDs whose creation may or may not have happened, with when the
        intent was written."""
        ...

    async def complete(self, issue_uuid: str, record: SyncRecord) -> None:
        """Record the mapping and clear the intent, together."""
        ...

    async def clear_pending(self, issue_uuid: str) -> None:
        """Drop an intent (its outcome is settled)."""
        ...

    def lock(self, wait_seconds: float) -> AbstractAsyncContextManager[RunLock]:
        """Hold the run lock (one sync at a time across processes); wait up to
        `wait_seconds` for it, then raise LockBusy naming the holder. A holder that dies
        loses it: at once for SQLite (file lock), after its expiry for Redis."""
        ...

    async def get_meta(self, name: str) -> str | None:
        """A small named value kept beside the records (e.g. the last run)."""
        ...

    async def set_meta(self, name: str, value: str) -> None:
        """Store a small named value."""
        ...

    async def aclose(self) -> None:
        """Release connections or files."""
        ...
