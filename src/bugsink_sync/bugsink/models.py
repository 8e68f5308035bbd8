"""The parts of Bugsink's canonical API answers that the sync reads.

Only the fields used are declared; anything else the server adds is ignored, so newer
Bugsink releases do not break parsing.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Project(_Model):
    """A Bugsink project; `id` is an int in lists (the create answer's string is not read)."""

    id: int
    name: str
    slug: str


class Issue(_Model):
    """One grouped error. `id` is its UUID, the key of the sync state."""

    id: str
    friendly_id: str | None = None
    project: int
    first_seen: datetime
    last_seen: datetime
    digested_event_count: int = 0
    calculated_type: str = ""
    calculated_value: str = ""
    transaction: str = ""
    is_resolved: bool = False
    is_muted: bool = False


class Event(_Model):
    """One occurrence, with the SDK's raw event in `data`."""

    id: str
    event_id: str = ""
    timestamp: datetime | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    stacktrace_md: str = ""


class Feature(StrEnum):
    """API capabilities that appeared in later Bugsink releases."""

    RESOLVE = "resolve"  # 2.2.1
    COMMENTS = "comments"  # 2.2.1
    REOPEN = "reopen"  # 2.4.0
    STATE_FILTER = "state_filter"  # 2.6.2


class ServerInfo(_Model):
    """What the schema endpoint says about the server."""

    version: str
    features: frozenset[Feature]

    def supports(self, feature: Feature) -> bool:
        """Whether this server offers `feature`."""
        return feature in self.features


class ResolveOutcome(StrEnum):
    """How an issue action (resolve, mute, reopen) ended; all but UNSUPPORTED mean done."""

    RESOLVED = "resolved"
    ALREADY_RESOLVED = "already_resolved"
    UNSUPPORTED = "unsupported"
