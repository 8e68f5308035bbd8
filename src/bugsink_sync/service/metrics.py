"""Prometheus metrics of the runs this process executed (one registry per app, no globals)."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from bugsink_sync.report import SyncReport

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class SyncMetrics:
    """Runs by outcome, issues by result, run duration, and the last successful run."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.runs = Counter(
            "bugsink_sync_runs", "Sync runs by outcome", ["outcome"], registry=self.registry
        )
        self.issues = Counter(
            "bugsink_sync_issues", "Bugsink issues by result", ["result"], registry=self.registry
        )
        self.duration = Histogram(
            "bugsink_sync_run_duration_seconds",
            "Duration of sync runs",
            buckets=(0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800),
            registry=self.registry,
        )
        self.last_success = Gauge(
            "bugsink_sync_last_success_timestamp_seconds",
            "Unix time of the last run that completed",
            registry=self.registry,
        )
        for outcome in ("completed", "aborted"):
            self.runs.labels(outcome)
        for result in ("synced", "skipped", "failed"):
            self.issues.labels(result)

    def observe(self, report: SyncReport, *, ok: bool) -> None:
        """Count one finished run."""
        self.runs.labels("completed" if ok else "aborted").inc()
        self.issues.labels("synced").inc(report.synced)
        self.issues.labels("skipped").inc(report.skipped)
        self.issues.labels("failed").inc(report.failed)
        self.duration.observe(report.duration_ms / 1000)
        if ok:
            self.last_success.set(time.time())

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)
