"""`python -m tests.lab.gitea --port P --owner O --repo R --token T [--org] [--user-login L]`.

Runs the fake Gitea in the foreground for demos and subprocess tests. It prints exactly one
line, `ready http://127.0.0.1:P`, once the port answers, and exits cleanly on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType

from .server import GiteaTestServer
from .state import GiteaState


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options; the seeded data is one token user and one repo."""
    parser = argparse.ArgumentParser(prog="python -m tests.lab.gitea", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--owner", required=True, help="repo owner (user, or org with --org)")
    parser.add_argument("--repo", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--org", action="store_true", help="make the owner an organisation")
    parser.add_argument(
        "--user-login",
        help="login of the token's user (default: the owner; 'sync-bot' with --org)",
    )
    parser.add_argument("--scopes", help="comma-separated token scopes (default: all)")
    parser.add_argument("--utc-offset", default="+02:00", help='server zone, e.g. "Z"')
    parser.add_argument("--search-index-lag", type=float, default=0.0, metavar="SECONDS")
    return parser.parse_args(argv)


def build_state(args: argparse.Namespace) -> GiteaState:
    """User + token + repo (+ org membership, or write collaboration for another login)."""
    state = GiteaState(utc_offset=args.utc_offset, search_index_lag_seconds=args.search_index_lag)
    login = args.user_login or ("sync-bot" if args.org else args.owner)
    scopes = [s.strip() for s in args.scopes.split(",")] if args.scopes else None
    if args.org:
        state.add_user(login, args.token, scopes)
        state.add_org(args.owner, members=[login])
    else:
        state.add_user(args.owner, args.token if login == args.owner else None, scopes)
        if login != args.owner:
            state.add_user(login, args.token, scopes)
    state.add_repo(args.owner, args.repo)
    if not args.org and login != args.owner:
        state.add_collaborator(args.owner, args.repo, login, write=True)
    return state


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGTERM/SIGINT."""
    args = parse_args(argv)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with GiteaTestServer(build_state(args), host=args.host, port=args.port) as server:
        print(f"ready {server.url}", flush=True)
        while not stop.wait(0.2):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
