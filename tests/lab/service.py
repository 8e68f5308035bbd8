"""Run `bugsink-sync serve` as a real process for tests, and read what it logged."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt

JWT_SECRET = "test-secret-" + "x" * 60  # 64+ bytes: long enough even for HS512


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def admin_token(secret: str = JWT_SECRET, **claims: Any) -> str:
    """An HS256 admin token valid for ten minutes (claims override the defaults)."""
    payload = {"sub": "tester", "role": "admin", "exp": int(time.time()) + 600, **claims}
    return jwt.encode(payload, secret, algorithm="HS256")


@dataclass
class ServiceProcess:
    """One `bugsink-sync serve` process with JSON logs captured in a file."""

    proc: subprocess.Popen[bytes]
    url: str
    log_path: Path
    headers: dict[str, str] = field(default_factory=dict)

    def logs(self) -> list[dict[str, Any]]:
        """Every JSON log line so far."""
        lines = self.log_path.read_text(errors="replace").splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def runs(self) -> list[tuple[float, float, str]]:
        """(start, end, trigger) of each finished run, from the process's own logs."""
        starts: list[dict[str, Any]] = []
        runs = []
        for entry in self.logs():
            if entry["message"] == "sync run started":
                starts.append(entry)
            elif entry["message"].startswith(("sync run finished", "sync run failed")) and starts:
                begun = starts.pop(0)
                runs.append((_ts(begun["time"]), _ts(entry["time"]), str(entry["trigger"])))
        return runs

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        """GET with the admin token."""
        return httpx.get(self.url + path, headers=self.headers, timeout=60, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        """POST with the admin token."""
        return httpx.post(self.url + path, headers=self.headers, timeout=120, **kwargs)

    def terminate(self, timeout: float = 30) -> int:
        """SIGTERM, then wait; returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        """SIGKILL if still running."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def _ts(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso).timestamp()


def start_service(env: dict[str, str], log_path: Path, ready_timeout: float = 30) -> ServiceProcess:
    """Start the service on a free port and wait until /healthz answers."""
    port = free_port()
    full_env = {**os.environ, "BUGSINK_SYNC_LOG_FORMAT": "json", "JWT_SECRET": JWT_SECRET, **env}
    log_file = log_path.open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "bugsink_sync.cli", "serve", "--port", str(port)],
        env=full_env,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        cwd=log_path.parent,
    )
    service = ServiceProcess(proc, f"http://127.0.0.1:{port}", log_path)
    service.headers = {"Authorization": f"Bearer {admin_token(full_env['JWT_SECRET'])}"}
    deadline = time.monotonic() + ready_timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"service exited with {proc.returncode}:\n{log_path.read_text()}")
        try:
            if httpx.get(service.url + "/healthz", timeout=1).status_code == 200:
                return service
        except httpx.HTTPError:
            time.sleep(0.05)
    service.kill()
    raise RuntimeError(f"service not ready in {ready_timeout} s:\n{log_path.read_text()}")
