"""Send real error events to a local Bugsink with sentry-sdk.

Runs with the Bugsink venv's python (sentry-sdk comes with Bugsink); the project venv does not
need sentry-sdk. Called by ``tests.lab.bugsink.send_events``.

Usage: send_events.py DSN [SCENARIO ...] [--environment E] [--release R] [--count N]

Scenarios (default: the basic ones, 12 events that make 9 issues):
  value_error      ValueError in parse_amount()
  key_error        KeyError in lookup_user()
  zero_div         ZeroDivisionError in compute_ratio()
  custom           PaymentGatewayError chained from ConnectionError
  request          RuntimeError with request (url, method, query, headers, data), user and a tag
  repeated[:N]     the same TimeoutError N times (default 4, or --count): 1 issue, N events
  message          capture_message(level="warning"): "Log Message" issue without exception
  logging          logging.error() through the LoggingIntegration: "Log Message" issue
  staging          FileNotFoundError with environment "staging", release "shop@1.2.3", tags
  regress          value_error again (send after resolving it: the issue regresses)
  unique:WORD      an exception type made from WORD (UniqueWordError): one new issue per WORD;
                   with --count N it makes N distinct issues (UniqueWordAaError, ...)

Prints one JSON line per captured event: {"scenario", "event_id", ...}. Events are flushed
with a long timeout before any re-init and at exit (a short flush loses them); exits 1 when
events are still pending or were dropped (network error, HTTP error, full queue).
"""

from __future__ import annotations

import argparse
import json
import logging
import string
import sys
from collections.abc import Callable
from typing import Any

# Only the Bugsink venv has sentry-sdk; the ignore keeps mypy quiet in the project venv.
import sentry_sdk  # type: ignore[import-not-found, unused-ignore]
from sentry_sdk.integrations.logging import (  # type: ignore[import-not-found, unused-ignore]
    LoggingIntegration,
)

BASIC = [
    "value_error",
    "key_error",
    "zero_div",
    "custom",
    "request",
    "repeated",
    "message",
    "logging",
    "staging",
]
FLUSH_TIMEOUT = 120.0
DROPPED: list[str] = []


def init(dsn: str, environment: str, release: str) -> None:
    """(Re)initialise the SDK; the caller must have flushed the previous client."""
    sentry_sdk.init(
        dsn=dsn,
        environment=environment,
        release=release,
        server_name="bugsink-lab-host",
        traces_sample_rate=None,  # Bugsink stores no transactions
        send_client_reports=False,
        auto_session_tracking=False,
        integrations=[LoggingIntegration(level=logging.INFO, event_level=logging.ERROR)],
        include_local_variables=True,
        transport_queue_size=100_000,  # bulk runs queue faster than one sender thread posts
        shutdown_timeout=FLUSH_TIMEOUT,
    )
    _watch_drops()


def _watch_drops() -> None:
    """Count events the transport gives up on: without this a 4xx/5xx is only a log line."""
    transport = sentry_sdk.get_client().transport
    original = getattr(transport, "on_dropped_event", None)
    if transport is None or original is None:
        return

    def on_dropped_event(reason: str) -> None:
        if reason != "status_429":
            DROPPED.append(reason)
        original(reason)

    setattr(transport, "on_dropped_event", on_dropped_event)  # noqa: B010 (not in the stubs)


def flush_or_die() -> None:
    """Flush with a long timeout; exit 1 if envelopes are still queued or were dropped."""
    client = sentry_sdk.get_client()
    client.flush(timeout=FLUSH_TIMEOUT)
    worker = getattr(client.transport, "_worker", None)
    queue = getattr(worker, "_queue", None)
    pending = getattr(queue, "unfinished_tasks", 0) if queue is not None else 0
    if pending:
        sys.exit(f"sentry-sdk still has {pending} pending envelopes after {FLUSH_TIMEOUT} s")
    if DROPPED:
        sys.exit(f"sentry-sdk dropped {len(DROPPED)} envelopes: {sorted(set(DROPPED))}")


def emit(scenario: str, event_id: str | None, **extra: Any) -> None:
    """Print the JSON line for one captured event (None means the SDK discarded it)."""
    if event_id is None:
        sys.exit(f"sentry-sdk did not capture the {scenario} event")
    print(json.dumps({"scenario": scenario, "event_id": event_id, **extra}), flush=True)


def capture(scenario: str, fn: Callable[..., object], *args: object, **extra: Any) -> None:
    """Call fn, which raises, and capture the exception with its real traceback."""
    try:
        fn(*args)
    except Exception as exc:
        emit(scenario, sentry_sdk.capture_exception(exc), **extra)


# ------------------------------------------------------------------------- code that fails


def parse_amount(raw: str) -> int:
    return int(raw)  # ValueError for "12,50"


def lookup_user(users: dict[str, int], user_id: str) -> int:
    return users[user_id]  # KeyError


def compute_ratio(a: float, b: float) -> float:
    return a / b  # ZeroDivisionError


class PaymentGatewayError(Exception):
    pass


def charge(amount: int) -> None:
    try:
        raise ConnectionError("connection refused by payment gateway")
    except ConnectionError as exc:
        raise PaymentGatewayError(f"charge of {amount} EUR failed") from exc


def fetch_remote(attempt: int) -> None:
    raise TimeoutError("upstream inventory service timed out")


def read_config() -> None:
    with open("/nonexistent/shop/config.yml"):
        pass


def raise_unique(exc_type: type[Exception], message: str) -> None:
    raise exc_type(message)


# -------------------------------------------------------------------------------- scenarios


class Runner:
    """Runs scenarios with the defaults from the command line (env/release/count)."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.dsn: str = args.dsn
        self.environment: str = args.environment
        self.release: str = args.release
        self.count: int | None = args.count

    def run(self, scenario: str) -> None:
        name, _, arg = scenario.partition(":")
        handler = getattr(self, f"scenario_{name}", None)
        if handler is None:
            sys.exit(f"unknown scenario {scenario!r}")
        if arg:
            handler(arg)
        else:
            handler()

    def scenario_value_error(self) -> None:
        capture("value_error", parse_amount, "12,50")

    def scenario_key_error(self) -> None:
        capture("key_error", lookup_user, {"alice": 1}, "bob")

    def scenario_zero_div(self) -> None:
        capture("zero_div", compute_ratio, 10, 0)

    def scenario_custom(self) -> None:
        capture("custom", charge, 42)

    def scenario_request(self) -> None:
        with sentry_sdk.new_scope() as scope:
            scope.add_event_processor(_add_request)
            scope.set_user({"id": "u-77", "email": "buyer@example.org"})
            try:
                raise RuntimeError("checkout confirmation failed: cart is locked")
            except RuntimeError as exc:
                emit("request", sentry_sdk.capture_exception(exc))

    def scenario_repeated(self, times: str | None = None) -> None:
        for attempt in range(int(times or self.count or 4)):
            capture("repeated", fetch_remote, attempt)

    def scenario_message(self) -> None:
        message = "Disk usage above 90% on /var/lib/shop"
        emit("message", sentry_sdk.capture_message(message, level="warning"))

    def scenario_logging(self) -> None:
        logging.getLogger("shop.orders").error("Order %s could not be exported to ERP", "O-1001")
        emit("logging", sentry_sdk.last_event_id())

    def scenario_staging(self) -> None:
        flush_or_die()  # init() replaces the client: queued events would be lost
        init(self.dsn, environment="staging", release="shop@1.2.3")
        with sentry_sdk.new_scope() as scope:
            scope.set_tag("customer_tier", "gold")
            scope.set_tag("region", "eu-west")
            capture("staging", read_config)
        flush_or_die()
        init(self.dsn, self.environment, self.release)

    def scenario_regress(self) -> None:
        capture("regress", parse_amount, "12,50")

    def scenario_unique(self, word: str) -> None:
        count = self.count or 1
        for index in range(count):
            suffix = _letters(index, count) if count > 1 else ""
            type_name = f"Unique{_camel(word)}{suffix}Error"
            exc_type = type(type_name, (Exception,), {})
            message = f"distinct failure {word} {suffix.lower()}".rstrip()
            capture("unique", raise_unique, exc_type, message, type=type_name, value=message)


def _add_request(event: Any, hint: dict[str, Any]) -> Any:
    """Event processor that makes the event look like it came from a web request."""
    event["request"] = {
        "url": "https://shop.example.org/checkout/confirm",
        "method": "POST",
        "query_string": "step=2&coupon=XMAS",
        "headers": {
            "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0",
            "Content-Type": "application/json",
        },
        "data": {"cart_id": "c-123"},
    }
    event.setdefault("tags", {})["url_kind"] = "checkout"
    return event


def _camel(word: str) -> str:
    """ "disk-full" -> "DiskFull": a valid-looking exception name part."""
    parts = "".join(c if c.isalnum() else " " for c in word).split()
    return "".join(p[:1].upper() + p[1:] for p in parts) or "X"


def _letters(index: int, count: int) -> str:
    """Index as fixed-width letters ("Aa", "Ab", ...): Bugsink's grouping normalises digits
    in messages, so letters keep the issues apart whatever it does with numbers."""
    width = 1
    while 26**width < count:
        width += 1
    chars = []
    for _ in range(width):
        index, rest = divmod(index, 26)
        chars.append(string.ascii_lowercase[rest])
    text = "".join(reversed(chars))
    return text[:1].upper() + text[1:]


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Send lab events to Bugsink")
    parser.add_argument("dsn")
    parser.add_argument("scenarios", nargs="*", default=BASIC)
    parser.add_argument("--environment", default="production")
    parser.add_argument("--release", default="shop@1.2.2")
    parser.add_argument("--count", type=int, default=None)
    return parser.parse_args(argv)


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    init(args.dsn, args.environment, args.release)
    runner = Runner(args)
    for scenario in args.scenarios:
        runner.run(scenario)
    flush_or_die()


if __name__ == "__main__":
    main(sys.argv[1:])
