"""The `bugsink-sync` command."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence

from bugsink_sync.config import ConfigError, Settings, load_settings
from bugsink_sync.job import sync_once
from bugsink_sync.logs import setup_logging
from bugsink_sync.service.server import serve
from bugsink_sync.sync import SyncAborted, SyncOptions, SyncReport

EXIT_OK = 0
EXIT_ABORTED = 1  # a service refused or went away
EXIT_CONFIG = 2  # configuration or usage


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
    serve = commands.add_parser("serve", help="run the scheduled worker and the admin API")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port to listen on (8000)")
    return parser


def _print_report(report: SyncReport) -> None:
    verb = "Would create" if report.dry_run else "Created"
    if report.created:
        print(f"{verb} {len(report.created)} Gitea issue(s):")
        for item in report.created:
            number = f"#{item.gitea_number} " if item.gitea_number is not None else ""
            link = f"  {item.url}" if item.url else ""
            print(f"  {number}{item.title}  [{', '.join(item.labels)}]{link}")
    for failure in report.failures:
        print(f"failed: {failure.project} {failure.bugsink_id}: {failure.reason}")
    s = report.summary()
    prefix = "dry run: " if report.dry_run else ""
    print(
        f"{prefix}synced {s['synced']}, skipped {s['skipped']}, failed {s['failed']} "
        f"in {s['duration_ms']} ms"
    )


async def _sync(settings: Settings, args: argparse.Namespace) -> int:
    options = SyncOptions(dry_run=args.dry_run, project=args.project)
    try:
        report = await sync_once(settings, options)
    except SyncAborted as aborted:
        if args.json:
            print(json.dumps(aborted.report.to_dict(), ensure_ascii=False))
        print(f"bugsink-sync: {aborted.cause}", file=sys.stderr)
        return EXIT_ABORTED
    if args.json:
        print(json.dumps(report.to_dict(), ensure_ascii=False))
    else:
        _print_report(report)
    return EXIT_OK


def _refuse_disabled(settings: Settings, args: argparse.Namespace) -> str | None:
    if settings.enabled or args.dry_run:
        return None
    return (
        "sync is disabled: BUGSINK_SYNC_ENABLED is not true. Set BUGSINK_SYNC_ENABLED=true "
        "where this should sync (the seed enables it on the test/staging server only), "
        "or preview with --dry-run"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        settings = load_settings()
        setup_logging(settings.log_format, args.verbose)
        if args.command == "serve":
            serve(settings, args.host, args.port)
            return EXIT_OK
        refusal = _refuse_disabled(settings, args)
        if refusal:
            print(f"bugsink-sync: {refusal}", file=sys.stderr)
            return EXIT_CONFIG
        return asyncio.run(_sync(settings, args))
    except ConfigError as exc:
        print(f"bugsink-sync: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
