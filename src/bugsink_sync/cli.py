"""The `bugsink-sync` command: sync, serve, and the state tools."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

from bugsink_sync.config import ConfigError, Settings, load_settings
from bugsink_sync.connections import connect
from bugsink_sync.doctor import Doctor, Status, as_json, healthy
from bugsink_sync.http import ServiceError
from bugsink_sync.job import options_for, sync_once
from bugsink_sync.logs import redact, setup_logging
from bugsink_sync.policy import labels_to_create
from bugsink_sync.progress import terminal_progress
from bugsink_sync.report import SyncAborted, SyncReport
from bugsink_sync.state import CorruptRecord, StateError, SyncRecord, iso_utc
from bugsink_sync.sync import rebuild_state

EXIT_OK = 0
EXIT_ABORTED = 1  # a service refused or went away
EXIT_CONFIG = 2  # configuration or usage

Command = Callable[[Settings, argparse.Namespace], Coroutine[Any, Any, int]]


def _port(text: str) -> int:
    port = int(text) if text.isdigit() else -1
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (1-65535)")
    return port


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bugsink-sync",
        description="Turn unresolved Bugsink errors into labelled Gitea issues.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log more detail")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sync = commands.add_parser("sync", help="run one sync now")
    sync.add_argument("--project", metavar="SLUG", help="only this configured project")
    sync.add_argument(
        "--dry-run", action="store_true", help="show what would be created; change nothing"
    )
    sync.add_argument("--json", action="store_true", help="print the report as one JSON object")
    sync.add_argument(
        "--backfill", action="store_true", help="create every new issue now (no per-run cap)"
    )
    serve = commands.add_parser("serve", help="run the scheduled worker and the admin API")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    serve.add_argument("--port", type=_port, default=8000, help="port to listen on (8000)")
    state = commands.add_parser("state", help="inspect or repair the sync state")
    tools = state.add_subparsers(dest="state_command", required=True, metavar="ACTION")
    listing = tools.add_parser("list", help="every recorded mapping")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    show = tools.add_parser("show", help="the mapping of one Bugsink issue")
    show.add_argument("uuid", help="the Bugsink issue UUID")
    forget = tools.add_parser("forget", help="delete the mapping of one Bugsink issue")
    forget.add_argument("uuid", help="the Bugsink issue UUID")
    forget.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    tools.add_parser("rebuild", help="rebuild the mapping from the Gitea issues' markers")
    doctor = commands.add_parser("doctor", help="check the configuration and every service")
    doctor.add_argument("--json", action="store_true", help="print the checks as JSON")
    labels = commands.add_parser("labels", help="manage the Gitea labels")
    label_tools = labels.add_subparsers(dest="labels_command", required=True, metavar="ACTION")
    label_tools.add_parser("ensure", help="create the configured labels that are missing")
    return parser


# --- sync ---------------------------------------------------------------------------------


def _print_report(report: SyncReport) -> None:
    verb = "Would create" if report.dry_run else "Created"
    if report.created:
        print(f"{verb} {len(report.created)} Gitea issue(s):")
        for item in report.created:
            number = f"#{item.gitea_number} " if item.gitea_number is not None else ""
            link = f"  {item.url}" if item.url else ""
            print(f"  {number}{item.title}  [{', '.join(item.labels)}]{link}")
    if report.recovered:
        verb = "Would record" if report.dry_run else "Recorded"
        print(f"{verb} {len(report.recovered)} existing Gitea issue(s) found by their marker:")
        for item in report.recovered:
            print(f"  #{item.gitea_number} {item.title}")
    for failure in report.failures:
        print(f"failed: {failure.project} {failure.bugsink_id}: {failure.reason}")
    if report.backlog:
        print(f"backlog: {report.backlog} new issue(s) left for later runs (--backfill: all now)")
    if report.regressions:
        print(f"regressions: {report.regressions} synced error(s) came back (see the log)")
    s = report.summary()
    counts = f"skipped {s['skipped']}, failed {s['failed']} in {s['duration_ms']} ms"
    if report.dry_run:
        print(f"dry run: would sync {s['synced']}, {counts}")
    else:
        print(f"synced {s['synced']}, {counts}")


def _refuse_disabled(settings: Settings, args: argparse.Namespace) -> str | None:
    if settings.enabled or args.dry_run:
        return None
    return (
        "sync is disabled: BUGSINK_SYNC_ENABLED is not true. Set BUGSINK_SYNC_ENABLED=true "
        "where this should sync (the design enables it on the test/staging server only), "
        "or preview with --dry-run"
    )


async def _sync(settings: Settings, args: argparse.Namespace) -> int:
    refusal = _refuse_disabled(settings, args)
    if refusal:
        print(f"bugsink-sync: {refusal}", file=sys.stderr)
        return EXIT_CONFIG
    options = options_for(
        settings, dry_run=args.dry_run, project=args.project, backfill=args.backfill
    )
    try:
        with terminal_progress(enabled=not args.json) as progress:
            report = await sync_once(settings, options, progress)
    except SyncAborted as aborted:
        if args.json:
            print(json.dumps(aborted.report.to_dict(), ensure_ascii=False))
        print(
            f"bugsink-sync: {redact(str(aborted.cause), settings.secret_values())}", file=sys.stderr
        )
        return EXIT_ABORTED
    if args.json:
        print(json.dumps(report.to_dict(), ensure_ascii=False))
    else:
        _print_report(report)
    return EXIT_OK


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    """Runs in the main thread, outside any event loop: uvicorn installs signal handlers."""
    # Imported here: the web stack costs ~0.2 s that one-shot `sync` runs need not pay.
    from bugsink_sync.service.server import serve

    serve(settings, args.host, args.port)
    return EXIT_OK


# --- state tools ------------------------------------------------------------------------------


def _record_line(uuid: str, record: SyncRecord) -> str:
    return (
        f"{uuid}  #{record.gitea_issue_number}  {record.project}  "
        f"{iso_utc(record.synced_at)}  {record.title}"
    )


async def _state(settings: Settings, args: argparse.Namespace) -> int:
    async with connect(settings) as c:
        if args.state_command == "list":
            listed = 0
            async for uuid, entry in c.store.items():
                listed += 1
                if args.json:
                    print(json.dumps({"bugsink_issue": uuid, **json.loads(entry.to_json())}))
                else:
                    print(_record_line(uuid, entry))
            if not listed:
                print(f"no mappings in {c.store.description}", file=sys.stderr)
            return EXIT_OK
        if args.state_command == "rebuild":
            found, written = await rebuild_state(c.gitea, c.store)
            print(
                f"found {found} Gitea issue(s) with a bugsink-sync marker; wrote {written} "
                f"mapping(s) to {c.store.description}"
            )
            return EXIT_OK
        try:
            record = await c.store.get(args.uuid)
        except CorruptRecord:
            if args.state_command != "forget" or not args.yes:
                raise
            await c.store.delete(args.uuid)
            print(f"forgot {args.uuid} (its stored value was not a sync record)")
            return EXIT_OK
        if record is None:
            print(
                f"bugsink-sync: no mapping for {args.uuid} in {c.store.description}",
                file=sys.stderr,
            )
            return EXIT_ABORTED
        if args.state_command == "show":
            print(_record_line(args.uuid, record))
            return EXIT_OK
        return await _forget(c.store.delete, args, record)


async def _forget(
    delete: Callable[[str], Awaitable[bool]], args: argparse.Namespace, record: SyncRecord
) -> int:
    if not args.yes:
        if not sys.stdin.isatty():
            print("bugsink-sync: add --yes to forget without a prompt", file=sys.stderr)
            return EXIT_CONFIG
        prompt = (
            f"Forget {args.uuid} (Gitea issue #{record.gitea_issue_number})? The next sync "
            "will adopt that issue again by its marker if the error is unresolved. [y/N] "
        )
        answer = await asyncio.to_thread(input, prompt)
        if answer.strip().lower() not in {"y", "yes"}:
            print("nothing changed")
            return EXIT_OK
    await delete(args.uuid)
    print(f"forgot {args.uuid} (Gitea issue #{record.gitea_issue_number})")
    return EXIT_OK


async def _labels(settings: Settings, args: argparse.Namespace) -> int:
    async with connect(settings) as c:
        names = [n for p in c.config.projects for n in c.config.labels_for(p)]
        wanted = {name: c.config.colour_of(name) for name in [*names, *c.config.labels]}
        existing = await c.gitea.labels()
        missing = labels_to_create(wanted, existing)
        for name in wanted:
            if name not in missing:
                print(f"exists   {name}")
        for name, colour in missing.items():
            await c.gitea.create_label(name, colour)
            print(f"created  {name} ({colour})")
    return EXIT_OK


_MARKS = {Status.OK: "✓", Status.WARN: "!", Status.FAIL: "✗"}


def _doctor(args: argparse.Namespace) -> int:
    results = asyncio.run(Doctor().run())
    if args.json:
        print(json.dumps(as_json(results), ensure_ascii=False))
    else:
        for result in results:
            print(f"{_MARKS[result.status]} {result.name}: {result.detail}")
            if result.fix and result.status is not Status.OK:
                print(f"    fix: {result.fix}")
    return EXIT_OK if healthy(results) else EXIT_ABORTED


COMMANDS: dict[str, Command] = {"sync": _sync, "state": _state, "labels": _labels}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = _parser().parse_args(argv)
    if args.command == "doctor":  # it reports a bad configuration as one of its checks
        return _doctor(args)
    try:
        settings = load_settings()
        setup_logging(settings.log_format, args.verbose, settings.secret_values())
        if args.command == "serve":
            return _serve(settings, args)
        return asyncio.run(COMMANDS[args.command](settings, args))
    except ConfigError as exc:
        print(f"bugsink-sync: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except (ServiceError, StateError) as exc:
        print(f"bugsink-sync: {redact(str(exc), settings.secret_values())}", file=sys.stderr)
        return EXIT_ABORTED
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. `state list | head`: the reader has all it wanted
        sys.stderr.close()
        return EXIT_OK
    except Exception as exc:  # a bug or an answer nobody foresaw: one line, no traceback
        logging.getLogger("bugsink_sync").debug("unexpected error", exc_info=True)
        print(
            f"bugsink-sync: unexpected error ({type(exc).__name__}: {str(exc)[:300]}); "
            "run with -v for details",
            file=sys.stderr,
        )
        return EXIT_ABORTED


if __name__ == "__main__":
    sys.exit(main())
