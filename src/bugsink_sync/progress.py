"""A progress display for a `sync` run in a terminal (rich), and nothing anywhere else."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn


class TerminalProgress:
    """Projects and the issues looked at so far, on stderr, gone when the run ends."""

    def __init__(self, display: Progress) -> None:
        self._display = display
        self._task: TaskID | None = None

    def project(self, slug: str) -> None:
        """Start a line for the next project (the previous one stays, completed)."""
        self._task = self._display.add_task(slug, total=None, count=0)

    def issue(self) -> None:
        """Count one more issue."""
        if self._task is not None:
            self._display.advance(self._task)


@contextmanager
def terminal_progress(*, enabled: bool = True) -> Iterator[TerminalProgress | None]:
    """A live display while stdout and stderr are terminals (and `enabled`); else None, so
    that piped or JSON output holds the result only."""
    if not (enabled and sys.stdout.isatty() and sys.stderr.isatty()):
        yield None
        return
    display = Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        TextColumn("{task.completed} issue(s) looked at"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    with display:
        yield TerminalProgress(display)
