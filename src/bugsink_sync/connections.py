"""Build the clients and the state store that settings describe, and close them after use."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from bugsink_sync.bugsink import BugsinkClient
from bugsink_sync.config import Settings, SyncConfig, load_sync_config
from bugsink_sync.gitea import GiteaClient
from bugsink_sync.state import RedisStore, SqliteStore, StateStore


@dataclass
class Connections:
    """Everything a run talks to."""

    bugsink: BugsinkClient
    gitea: GiteaClient
    store: StateStore
    config: SyncConfig


def open_store(settings: Settings, *, read_only: bool = False) -> StateStore:
    """Redis DB `state_db` when REDIS_URL is set, else the SQLite file."""
    if settings.redis_url:
        ttl_ms = round(settings.lock_ttl * 1000)
        return RedisStore.from_url(settings.redis_url, settings.state_db, ttl_ms)
    return SqliteStore(settings.sqlite_path, read_only=read_only)


@asynccontextmanager
async def connect(settings: Settings, *, read_only: bool = False) -> AsyncIterator[Connections]:
    """Open clients and store for a run; `read_only` keeps a missing SQLite file uncreated."""
    config = load_sync_config(settings.config_file)
    store = open_store(settings, read_only=read_only)
    bugsink = BugsinkClient(
        settings.bugsink_url,
        settings.bugsink_token.get_secret_value(),
        timeout=settings.http_timeout,
    )
    gitea = GiteaClient(
        settings.gitea_url,
        settings.gitea_api_token.get_secret_value(),
        settings.gitea_owner,
        settings.gitea_repo,
        timeout=settings.http_timeout,
    )
    try:
        yield Connections(bugsink, gitea, store, config)
    finally:
        await bugsink.aclose()
        await gitea.aclose()
        await store.aclose()
