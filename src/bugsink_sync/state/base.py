"""The sync state: which Bugsink issue became which Gitea issue.

One interface, two stores (Redis DB 15 as in the seed, or an SQLite file for users without
Redis), holding the same JSON value per Bugsink issue UUID.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

KEY_PREFIX = "bugsink:synced:"
META_PREFIX = "bugsink-sync:"  # Redis keys of small service facts, e.g. bugsink-sync:last_run


class StateError(Exception):
    """The state store cannot be read or written; the message names the store and the fix."""


@dataclass(frozen=True)
class SyncRecord:
    """The seed's value: `{"gitea_issue_number", "synced_at", "project", "title"}`."""

    gitea_issue_number: int
    synced_at: datetime
    project: str
    title: str

    def to_json(self) -> str:
        """The stored form; `synced_at` as ISO 8601 UTC with a `Z`."""
        return json.dumps(
            {
                "gitea_issue_number": self.gitea_issue_number,
                "synced_at": iso_utc(self.synced_at),
                "project": self.project,
                "title": self.title,
            },
            ensure_ascii=False,
        )

    @classmethod
    def from_json(cls, text: str | bytes, where: str = "the state store") -> SyncRecord:
        """Parse a stored value; a value that is not a record is a StateError naming `where`."""
        try:
            data: Any = json.loads(text)
            return cls(
                gitea_issue_number=int(data["gitea_issue_number"]),
                synced_at=datetime.fromisoformat(str(data["synced_at"]).replace("Z", "+00:00")),
                project=str(data.get("project", "")),
                title=str(data.get("title", "")),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise StateError(
                f"{where} holds a value that is not a sync record ({type(exc).__name__}: {exc}). "
                "Fix: inspect it; `bugsink-sync state forget UUID` removes it"
            ) from None


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

    async def get_meta(self, name: str) -> str | None:
        """A small named value kept beside the records (e.g. the last run)."""
        ...

    async def set_meta(self, name: str, value: str) -> None:
        """Store a small named value."""
        ...

    async def aclose(self) -> None:
        """Release connections or files."""
        ...
