"""Pytest fixtures for a real Bugsink (see ``tests/lab/bugsink.py``).

Load them with ``from tests.lab.bugsink_fixtures import *`` in a conftest. A server that cannot
be built or started fails the test with the reason: it never skips, so a broken lab is seen.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import pytest

from tests.lab.bugsink import DEFAULT_VERSION, BugsinkProject, BugsinkServer, start_bugsink

__all__ = ["bugsink", "bugsink_project"]


@pytest.fixture(scope="session")
def bugsink() -> Iterator[BugsinkServer]:
    """One Bugsink 2.6.2 for the whole session (the first run installs it: ~13 s + ~5 s)."""
    with _start_or_fail(DEFAULT_VERSION) as server:
        yield server


def _start_or_fail(version: str) -> BugsinkServer:
    """Start, or fail (never skip) with the lab's own message, without a chained traceback."""
    try:
        return start_bugsink(version)
    except Exception as exc:
        message = f"could not start Bugsink {version} for the tests: {exc}"
    pytest.fail(message, pytrace=False)


@pytest.fixture
def bugsink_project(bugsink: BugsinkServer, request: pytest.FixtureRequest) -> BugsinkProject:
    """A fresh project per test, so a test sees only its own issues on the shared server."""
    base = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40]
    return bugsink.create_project(f"{base or 'test'}-{uuid.uuid4().hex[:8]}")
