"""What a run did: created and recovered issues, failures, notices, counts."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

log = logging.getLogger("bugsink_sync.sync")


@dataclass
class CreatedIssue:
    """A Gitea issue made (or, in a dry run, that would be made) for a Bugsink issue."""

    bugsink_id: str
    project: str
    title: str
    labels: list[str]
    gitea_number: int | None = None
    url: str | None = None


@dataclass
class Failure:
    """A Bugsink issue that could not be synced this run, and why."""

    bugsink_id: str
    project: str
    reason: str


@dataclass
class SyncReport:
    """What a run did. `summary()` is the seed's API shape."""

    run_id: str = ""
    synced: int = 0
    skipped: int = 0
    failed: int = 0
    duration_ms: int = 0
    dry_run: bool = False
    created: list[CreatedIssue] = field(default_factory=list)
    recovered: list[CreatedIssue] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    error: str | None = None
    backlog: int = 0  # new issues left for later runs by the per-run cap
    regressions: int = 0
    filtered: int = 0
    muted: int = 0

    def summary(self) -> dict[str, int]:
        """`{"synced", "skipped", "failed", "duration_ms"}`."""
        return {
            "synced": self.synced,
            "skipped": self.skipped,
            "failed": self.failed,
            "duration_ms": self.duration_ms,
        }

    def to_dict(self) -> dict[str, Any]:
        """Everything, for `--json`."""
        return asdict(self)

    def notice(self, text: str) -> None:
        """Say something once per run (and log it)."""
        if text not in self.notices:
            self.notices.append(text)
            log.warning(text, extra={"run_id": self.run_id})


class SyncAborted(Exception):
    """The run stopped early (a service refused or went away); `report` says how far it got."""

    def __init__(self, report: SyncReport, cause: Exception) -> None:
        self.report = report
        self.cause = cause
        super().__init__(str(cause))
