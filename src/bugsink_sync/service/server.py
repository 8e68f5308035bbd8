"""`bugsink-sync serve`: wire settings into the scheduler, the admin API and uvicorn."""

from __future__ import annotations

import asyncio
import signal

import uvicorn
from fastapi import FastAPI

from bugsink_sync.bugsink import BugsinkClient
from bugsink_sync.config import ConfigError, Settings
from bugsink_sync.connections import open_store
from bugsink_sync.gitea import GiteaClient
from bugsink_sync.http import NO_RETRY
from bugsink_sync.job import options_for, sync_once
from bugsink_sync.report import SyncReport
from bugsink_sync.service.api import Check, ServiceContext, create_app
from bugsink_sync.service.auth import AdminPolicy
from bugsink_sync.service.metrics import SyncMetrics
from bugsink_sync.service.runs import SyncRunner
from bugsink_sync.service.schedule import (
    LocalScheduler,
    QueueScheduler,
    Scheduler,
    redis_url_for_db,
)
from bugsink_sync.state import StateStore

READY_TIMEOUT = 5.0


def admin_policy(settings: Settings) -> AdminPolicy:
    """The JWT policy; the admin API cannot run without a secret."""
    if settings.jwt_secret is None:
        raise ConfigError(
            "configuration: JWT_SECRET is not set; the admin API needs the HS256 secret its "
            "admin tokens are signed with (at least 32 bytes)"
        )
    return AdminPolicy(
        settings.jwt_secret.get_secret_value(), settings.jwt_role_claim, settings.jwt_admin_value
    )


def _readiness(settings: Settings, store: StateStore) -> dict[str, Check]:
    async def state() -> None:
        await store.get_meta("ready")

    async def bugsink() -> None:
        token = settings.bugsink_token.get_secret_value()
        async with BugsinkClient(
            settings.bugsink_url, token, timeout=READY_TIMEOUT, retry=NO_RETRY
        ) as c:
            await c.check_token()

    async def gitea() -> None:
        token = settings.gitea_api_token.get_secret_value()
        async with GiteaClient(
            settings.gitea_url,
            token,
            settings.gitea_owner,
            settings.gitea_repo,
            timeout=READY_TIMEOUT,
            retry=NO_RETRY,
        ) as c:
            await c.repository()

    return {"redis" if settings.redis_url else "sqlite": state, "bugsink": bugsink, "gitea": gitea}


def build_app(settings: Settings) -> FastAPI:
    """The whole service as an ASGI app (the scheduler starts with the app's lifespan)."""
    policy = admin_policy(settings)
    store = open_store(settings)
    metrics = SyncMetrics()

    async def run_once(issue: str | None) -> SyncReport:
        return await sync_once(settings, options_for(settings, issue=issue))

    runner = SyncRunner(run_once, store, metrics)
    scheduler: Scheduler
    if settings.redis_url:
        queue_url = redis_url_for_db(settings.redis_url, settings.queue_db)
        scheduler = QueueScheduler(
            runner, queue_url, settings.interval_seconds, enabled=settings.enabled
        )
    else:
        scheduler = LocalScheduler(runner, settings.interval_seconds, enabled=settings.enabled)
    context = ServiceContext(
        scheduler=scheduler,
        runner=runner,
        store=store,
        policy=policy,
        metrics=metrics,
        readiness=_readiness(settings, store),
        grace_seconds=settings.shutdown_timeout,
        webhook_secret=(
            settings.webhook_secret.get_secret_value() if settings.webhook_secret else None
        ),
    )
    return create_app(context)


def serve(settings: Settings, host: str, port: int) -> None:
    """Run until SIGTERM/SIGINT; a sync in progress gets the shutdown timeout to finish."""
    app = build_app(settings)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        lifespan="on",
        timeout_graceful_shutdown=max(1, round(settings.shutdown_timeout)),
    )
    # uvicorn re-raises the SIGTERM it handled once shut down; a no-op handler underneath
    # lets the process end with status 0 after its graceful shutdown instead of by signal.
    signal.signal(signal.SIGTERM, lambda *_: None)
    asyncio.run(uvicorn.Server(config).serve())
