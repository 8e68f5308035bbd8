"""Running syncs inside the service: one at a time per process, each run recorded.

`RunRecord` is what a run leaves behind (kept in the state store as `last_run`, returned by
the queue job, shown by the admin API); `SyncRunner` executes a run and records it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from bugsink_sync.config import ConfigError
from bugsink_sync.report import SyncAborted, SyncReport
from bugsink_sync.service.metrics import SyncMetrics
from bugsink_sync.state import StateError, StateStore, iso_utc

log = logging.getLogger("bugsink_sync.service")
LAST_RUN = "last_run"

RunOnce = Callable[[str | None], Awaitable[SyncReport]]  # the Bugsink issue, or all


@dataclass(frozen=True)
class RunRecord:
    """One finished run: when, why, its report, and the error that stopped it, if any."""

    trigger: str
    started_at: str
    finished_at: str
    summary: dict[str, int]
    error: str | None = None
    notices: list[str] = field(default_factory=list)
    backlog: int = 0
    issue: str | None = None

    @property
    def ok(self) -> bool:
        """True when the run completed."""
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunRecord:
        """Read back a stored or returned record."""
        return cls(
            trigger=str(data["trigger"]),
            started_at=str(data["started_at"]),
            finished_at=str(data["finished_at"]),
            summary={k: int(v) for k, v in dict(data["summary"]).items()},
            error=data.get("error"),
            notices=list(data.get("notices") or []),
            backlog=int(data.get("backlog") or 0),
            issue=data.get("issue"),
        )


class SyncRunner:
    """Executes runs in this process, never two at once, and records each one."""

    def __init__(self, run_once: RunOnce, store: StateStore, metrics: SyncMetrics) -> None:
        self._run_once = run_once
        self._store = store
        self._metrics = metrics
        self._lock = asyncio.Lock()

    @property
    def busy(self) -> bool:
        """Whether a run is in progress in this process."""
        return self._lock.locked()

    async def wait_idle(self) -> None:
        """Return once no run is in progress in this process."""
        async with self._lock:
            pass

    async def run(self, trigger: str, issue: str | None = None) -> RunRecord:
        """Run one sync (of one Bugsink issue, for a webhook) and record it; a failed run is
        recorded too, never raised."""
        async with self._lock:
            started = datetime.now(UTC)
            log.info("sync run started", extra={"trigger": trigger, "issue": issue})
            report, error = await self._execute(issue)
            record = RunRecord(
                trigger=trigger,
                started_at=iso_utc(started),
                finished_at=iso_utc(datetime.now(UTC)),
                summary=report.summary(),
                error=error,
                notices=list(report.notices),
                backlog=report.backlog,
                issue=issue,
            )
            self._metrics.observe(report, ok=error is None)
            await self._save(record)
            self._log_finished(record, report.run_id)
            return record

    @staticmethod
    def _log_finished(record: RunRecord, run_id: str) -> None:
        """One line a person can read in text logs too: counts, and the error if any."""
        counts = ", ".join(f"{name} {value}" for name, value in record.summary.items())
        fields = {"trigger": record.trigger, "run_id": run_id, **record.summary}
        if record.ok:
            log.info("sync run finished: %s", counts, extra=fields)
        else:
            log.error(
                "sync run failed: %s (%s)",
                record.error,
                counts,
                extra=fields | {"error": record.error},
            )

    async def _execute(self, issue: str | None) -> tuple[SyncReport, str | None]:
        try:
            return await self._run_once(issue), None
        except SyncAborted as aborted:
            return aborted.report, str(aborted.cause)
        except ConfigError as exc:
            return SyncReport(), str(exc)
        except Exception as exc:  # a bug must not kill the worker; it is logged in full
            log.exception("sync run crashed")
            return SyncReport(), f"unexpected error: {type(exc).__name__}: {exc}"

    async def _save(self, record: RunRecord) -> None:
        try:
            await self._store.set_meta(LAST_RUN, json.dumps(record.to_dict()))
        except StateError as exc:
            log.error("could not record the run: %s", exc)

    async def last_run(self) -> RunRecord | None:
        """The latest run any instance recorded in the shared store."""
        raw = await self._store.get_meta(LAST_RUN)
        return RunRecord.from_dict(json.loads(raw)) if raw else None
