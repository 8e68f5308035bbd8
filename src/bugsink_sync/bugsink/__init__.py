"""Bugsink: the client for its canonical API and the models it returns."""

from bugsink_sync.bugsink.client import BugsinkClient, features_from_schema
from bugsink_sync.bugsink.models import (
    Event,
    Feature,
    Issue,
    Project,
    ResolveOutcome,
    ServerInfo,
)

__all__ = [
    "BugsinkClient",
    "Event",
    "Feature",
    "Issue",
    "Project",
    "ResolveOutcome",
    "ServerInfo",
    "features_from_schema",
]
