"""When runs happen: every interval, and on demand, never two at once.

Two implementations of one interface:
- `QueueScheduler`: the seed's BullMQ queue `bugsink-sync` on Redis (a job scheduler every
  N minutes, queue-wide concurrency 1, so several instances never overlap; Node tools and
  Bull Board see the same queue);
- `LocalScheduler`: an in-process timer for a single instance without Redis.

A manual trigger while a run is in progress waits for that run and returns its record.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from bullmq import Job, Queue, Worker
from redis.exceptions import RedisError

from bugsink_sync.service.runs import RunRecord, SyncRunner

log = logging.getLogger("bugsink_sync.service")
T = TypeVar("T")

QUEUE_NAME = "bugsink-sync"
JOB_NAME = "sync"
SCHEDULER_ID = "bugsink-sync-every"
MANUAL_DEDUP_ID = "bugsink-sync-manual"
JOB_OPTIONS = {"attempts": 1, "removeOnComplete": {"count": 200}, "removeOnFail": {"count": 500}}
POLL_SECONDS = 0.1
_DISABLED = (
    "sync is disabled (BUGSINK_SYNC_ENABLED is not true): nothing is scheduled and triggers "
    "are refused"
)


class SyncDisabled(Exception):
    """A run was asked for while BUGSINK_SYNC_ENABLED is false."""


class QueueUnavailable(Exception):
    """Redis did not answer the queue in time."""


QUEUE_CALL_SECONDS = 10.0


async def _bounded(call: Awaitable[T]) -> T:
    """A queue call that gives up after QUEUE_CALL_SECONDS: the Redis client would retry
    for minutes, and an admin request must not hang that long."""
    try:
        return await asyncio.wait_for(call, QUEUE_CALL_SECONDS)
    except (TimeoutError, RedisError, OSError) as exc:
        raise QueueUnavailable(
            f"Redis did not answer the queue ({type(exc).__name__}); check REDIS_URL and Redis"
        ) from exc


class Scheduler(Protocol):
    """What the API and the server need from a scheduler."""

    enabled: bool

    async def start(self) -> None:
        """Begin scheduling (and, for the queue, processing jobs)."""
        ...

    async def stop(self, grace_seconds: float) -> None:
        """Stop; a run in progress gets `grace_seconds` seconds to finish."""
        ...

    async def trigger(self) -> RunRecord:
        """Run now, or join the run in progress; return its record."""
        ...

    async def enqueue_issue(self, issue_id: str) -> None:
        """Sync one Bugsink issue soon (a webhook), through the same queue and lock."""
        ...

    async def next_run(self) -> datetime | None:
        """When the next scheduled run is due (None when disabled)."""
        ...

    async def workers_status(self) -> dict[str, Any]:
        """Worker and queue state for `/api/admin/workers/status`."""
        ...


def _from_ms(ms: Any) -> datetime | None:
    return datetime.fromtimestamp(int(ms) / 1000, UTC) if ms else None


class LocalScheduler:
    """An asyncio timer; concurrent triggers and ticks join the same run."""

    def __init__(self, runner: SyncRunner, interval_seconds: float, *, enabled: bool) -> None:
        self.enabled = enabled
        self._runner = runner
        self._interval = interval_seconds
        self._current: asyncio.Task[RunRecord] | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._next: float | None = None
        self._issue_runs: set[asyncio.Task[RunRecord]] = set()

    async def start(self) -> None:
        """Start the timer (only when enabled); the first run is due at once, as with BullMQ."""
        if not self.enabled:
            log.warning(_DISABLED)
        else:
            self._next = time.time()
            self._loop_task = asyncio.create_task(self._loop())

    async def _loop(self) -> None:
        while True:
            assert self._next is not None
            await asyncio.sleep(max(0.0, self._next - time.time()))
            self._next = time.time() + self._interval
            await self._join_or_start("schedule")

    def _join_or_start(self, trigger: str) -> asyncio.Future[RunRecord]:
        if self._current is None or self._current.done():
            self._current = asyncio.create_task(self._runner.run(trigger))
        return asyncio.shield(self._current)

    async def trigger(self) -> RunRecord:
        """Run now, or join the run in progress."""
        if not self.enabled:
            raise SyncDisabled
        return await self._join_or_start("manual")

    async def enqueue_issue(self, issue_id: str) -> None:
        """Start a run for one issue in the background (the runner serialises runs)."""
        if not self.enabled:
            raise SyncDisabled
        task = asyncio.create_task(self._runner.run("webhook", issue_id))
        self._issue_runs.add(task)  # keep a reference until it is done
        task.add_done_callback(self._issue_runs.discard)

    async def next_run(self) -> datetime | None:
        """When the timer fires next."""
        return datetime.fromtimestamp(self._next, UTC) if self.enabled and self._next else None

    async def stop(self, grace_seconds: float) -> None:
        """Stop the timer; give a run in progress `grace_seconds`, then cancel it."""
        if self._loop_task is not None:
            self._loop_task.cancel()
        if self._current is not None and not self._current.done():
            try:
                await asyncio.wait_for(asyncio.shield(self._current), grace_seconds)
            except TimeoutError:
                log.warning(
                    "the running sync did not finish within %.0f s; cancelled", grace_seconds
                )
                self._current.cancel()

    async def workers_status(self) -> dict[str, Any]:
        """This process is the worker; there is no queue."""
        running = self._current is not None and not self._current.done()
        return {
            "mode": "in-process",
            "worker": {"running": self.enabled, "busy": running, "concurrency": 1},
            "queue": None,
            "scheduler": {
                "every_ms": round(self._interval * 1000),
                "next_run": _iso(await self.next_run()),
            },
        }


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if moment else None


def redis_url_for_db(url: str, db: int) -> str:
    """The same server with another DB number (path for redis://, `db=` for unix://)."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        query = dict(parse_qsl(parts.query))
        query["db"] = str(db)
        return urlunsplit(parts._replace(query=urlencode(query)))
    return urlunsplit(parts._replace(path=f"/{db}"))


class QueueScheduler:
    """The BullMQ queue `bugsink-sync`, shared by every instance on the same Redis DB."""

    def __init__(
        self,
        runner: SyncRunner,
        redis_url: str,
        interval_seconds: float,
        *,
        enabled: bool,
        prefix: str = "bull",
        lock_ms: int = 30_000,
        stalled_ms: int = 30_000,
    ) -> None:
        self.enabled = enabled
        self._runner = runner
        self._connection = redis_url
        self._every_ms = max(1, round(interval_seconds * 1000))
        self._prefix = prefix
        self._lock_ms = lock_ms
        self._stalled_ms = stalled_ms
        self._name = f"{socket.gethostname()}-{os.getpid()}"
        self.queue: Queue | None = None
        self._worker: Worker | None = None
        self._watchdog: asyncio.Task[None] | None = None

    def _opts(self) -> dict[str, Any]:
        return {"connection": self._connection, "prefix": self._prefix}

    async def start(self) -> None:
        """Register the schedule (idempotent) and start this instance's worker.

        Must run inside the event loop: BullMQ's Worker schedules its own task when built.
        """
        self.queue = Queue(QUEUE_NAME, self._opts())
        if not self.enabled:
            log.warning(_DISABLED)
            # A disabled deployment must not keep a schedule an earlier run registered.
            await self.queue.removeJobScheduler(SCHEDULER_ID)
            return
        await self._register()
        self._watchdog = asyncio.create_task(self._keep_registered())
        self._worker = Worker(
            QUEUE_NAME,
            self._process,
            {
                **self._opts(),
                "concurrency": 1,
                "name": self._name,
                "lockDuration": self._lock_ms,
                "stalledInterval": self._stalled_ms,
            },
        )

    async def _register(self) -> None:
        """Queue-wide concurrency 1 (never two syncs at once) and the job scheduler;
        idempotent, so every instance does it at start."""
        queue = self._require_queue()
        await queue.setGlobalConcurrency(1)
        await queue.upsertJobScheduler(
            SCHEDULER_ID, {"every": self._every_ms}, JOB_NAME, {"trigger": "schedule"}, JOB_OPTIONS
        )

    async def _keep_registered(self) -> None:
        """Register again if Redis lost the schedule (a restart without persistence)."""
        period = min(30.0, self._every_ms / 1000)
        while True:
            await asyncio.sleep(period)
            try:
                if not await _bounded(self._require_queue().isJobScheduler(SCHEDULER_ID)):
                    log.warning("the schedule was gone from Redis: registered it again")
                    await _bounded(self._register())
            except Exception as exc:  # Redis away: try again next period
                log.warning("could not check the schedule in Redis: %s", exc)

    async def _process(self, job: Job, token: str) -> dict[str, Any]:
        data = job.data or {}
        record = await self._runner.run(str(data.get("trigger", "schedule")), data.get("issue"))
        # Keep the record on the job too, so a waiting trigger can read it even if it failed.
        await job.updateData({**(job.data or {}), "result": record.to_dict()})
        if not record.ok:
            raise RuntimeError(record.error)  # failed in Bull Board, with the reason
        return record.to_dict()

    async def trigger(self) -> RunRecord:
        """Join the active run, or add one manual job (deduplicated) and wait for it."""
        if not self.enabled:
            raise SyncDisabled
        queue = self._require_queue()
        active = await queue.getActive(0, 0)
        if active:
            return await self._wait(active[0].id)
        job = await queue.add(
            JOB_NAME,
            {"trigger": "manual"},
            {**JOB_OPTIONS, "deduplication": {"id": MANUAL_DEDUP_ID}},
        )
        return await self._wait(job.id)

    async def enqueue_issue(self, issue_id: str) -> None:
        """Add a job for one issue; a second webhook for it while one waits is merged."""
        if not self.enabled:
            raise SyncDisabled
        options = {**JOB_OPTIONS, "deduplication": {"id": f"bugsink-sync-issue-{issue_id}"}}
        data = {"trigger": "webhook", "issue": issue_id}
        await _bounded(self._require_queue().add(JOB_NAME, data, options))

    async def _wait(self, job_id: str) -> RunRecord:
        queue = self._require_queue()
        while True:
            job = await _bounded(Job.fromId(queue, job_id))
            if job is None:
                raise RuntimeError(f"job {job_id} of queue {QUEUE_NAME} disappeared")
            result = (job.data or {}).get("result")
            if job.finishedOn and result:
                return RunRecord.from_dict(result)
            if job.finishedOn and job.failedReason:
                raise RuntimeError(f"job {job_id} failed: {job.failedReason}")
            await asyncio.sleep(POLL_SECONDS)

    def _require_queue(self) -> Queue:
        if self.queue is None:
            raise RuntimeError("the scheduler is not started")
        return self.queue

    async def next_run(self) -> datetime | None:
        """The job scheduler's next run."""
        if not self.enabled:
            return None
        queue = self._require_queue()
        if not await _bounded(queue.isJobScheduler(SCHEDULER_ID)):
            return None
        scheduler = await _bounded(queue.getJobScheduler(SCHEDULER_ID))
        return _from_ms((scheduler or {}).get("next"))

    async def stop(self, grace_seconds: float) -> None:
        """Close the worker; a running job gets `grace_seconds`, then is force-closed (another
        instance's stalled check runs it again)."""
        if self._watchdog is not None:
            self._watchdog.cancel()
        if self._worker is not None:
            # Worker.close() cannot be cancelled and waits for the job however long it takes,
            # so stop taking jobs first and bound the wait here.
            await self._worker.pause(do_not_wait_active=True)
            try:
                await asyncio.wait_for(self._runner.wait_idle(), grace_seconds)
            except TimeoutError:
                log.warning(
                    "the running sync did not finish within %.0f s; force-closing", grace_seconds
                )
            await self._worker.close(force=self._runner.busy)
        if self.queue is not None:
            await self.queue.close()

    async def workers_status(self) -> dict[str, Any]:
        """Counts of the queue and this instance's worker."""
        queue = self._require_queue()
        counts = await _bounded(
            queue.getJobCounts("waiting", "active", "delayed", "failed", "completed")
        )
        return {
            "mode": "bullmq",
            "worker": {
                "running": self._worker is not None and not self._worker.closing,
                "name": self._name,
                "busy": self._runner.busy,
                "concurrency": 1,
            },
            "queue": {
                "name": QUEUE_NAME,
                "prefix": self._prefix,
                "global_concurrency": await _bounded(queue.getGlobalConcurrency()),
                **{k: int(v) for k, v in counts.items()},
            },
            "scheduler": {
                "id": SCHEDULER_ID,
                "every_ms": self._every_ms if self.enabled else None,
                "next_run": _iso(await self.next_run()),
            },
        }
