"""Logging to stderr, as text for people or JSON lines for machines, with secrets removed.

Every line passes through a redacting formatter: the configured tokens and secrets, and the
webhook secret in request paths (uvicorn's access log), never reach the output.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable
from datetime import UTC, datetime

# Attributes every LogRecord has; anything else was passed with `extra=` and is kept.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}
_WEBHOOK_PATH = re.compile(r"(/api/bugsink/webhook/)[^\s\"'?/]+")
REDACTED = "[redacted]"


class JsonFormatter(logging.Formatter):
    """One JSON object per line with time, level, logger, message and any `extra` fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class RedactingFormatter(logging.Formatter):
    """Formats with `inner`, then blanks out every secret in the finished line."""

    def __init__(self, inner: logging.Formatter, secrets: Iterable[str]) -> None:
        super().__init__()
        self._inner = inner
        # Longest first, so a secret that contains another is blanked whole.
        self._secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def format(self, record: logging.LogRecord) -> str:
        return redact(self._inner.format(record), self._secrets)


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` without the given secrets or a webhook secret in a path."""
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    return _WEBHOOK_PATH.sub(r"\1" + REDACTED, text)


def setup_logging(fmt: str = "text", verbose: bool = False, secrets: Iterable[str] = ()) -> None:
    """Send the program's (and uvicorn's) logs to stderr; stdout stays for results."""
    inner = (
        JsonFormatter()
        if fmt == "json"
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactingFormatter(inner, secrets))
    for name in ("bugsink_sync", "uvicorn"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(logging.DEBUG if verbose else logging.INFO)
        logger.propagate = False
