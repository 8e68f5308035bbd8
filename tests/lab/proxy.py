"""A fault-injecting HTTP proxy on loopback, put in front of the real Bugsink.

Requests are forwarded to the upstream as they are; faults make chosen calls fail the ways
a network and a server fail: an error answer without forwarding, a lost answer (forwarded,
so the work is done, then 500), a slow answer. `down()` stops listening altogether
(connection refused) and `up()` listens again on the same port.
"""

from __future__ import annotations

import asyncio
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

_HOP_HEADERS = {"host", "content-length", "connection", "transfer-encoding", "keep-alive"}


@dataclass
class ProxyFault:
    """One rule: `kind` is error | lost_response | delay; fires `times` times (None: always)."""

    method: str
    path_regex: str
    kind: str
    times: int | None = 1
    params: dict[str, Any] = field(default_factory=dict)


class FaultProxy:
    """`url` stands in for the upstream's URL in the product's settings."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.faults: list[ProxyFault] = []
        self.requests: list[tuple[str, str, int]] = []
        self._lock = threading.Lock()
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port = int(self._sock.getsockname()[1])
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The proxy's base URL."""
        return f"http://127.0.0.1:{self.port}"

    def add_fault(
        self, method: str, path_regex: str, kind: str, times: int | None = 1, **params: Any
    ) -> None:
        """Make matching requests fail; see the class doc for the kinds."""
        with self._lock:
            self.faults.append(ProxyFault(method.upper(), path_regex, kind, times, params))

    def _take(self, method: str, path: str) -> ProxyFault | None:
        with self._lock:
            for fault in self.faults:
                if fault.method in (method, "*") and re.search(fault.path_regex, path):
                    if fault.times is not None:
                        fault.times -= 1
                        if fault.times <= 0:
                            self.faults.remove(fault)
                    return fault
        return None

    async def _handle(self, request: Request) -> Response:
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        fault = self._take(request.method, request.url.path)
        if fault is not None and fault.kind == "error":
            status = int(fault.params.get("status", 500))
            self.requests.append((request.method, path, status))
            return JSONResponse({"detail": "injected fault"}, status_code=status)
        if fault is not None and fault.kind == "delay":
            await asyncio.sleep(float(fault.params.get("seconds", 1.0)))
        upstream = await self._forward(request, path)
        if fault is not None and fault.kind == "lost_response":
            self.requests.append((request.method, path, 500))
            return JSONResponse({"detail": "injected: answer lost"}, status_code=500)
        self.requests.append((request.method, path, upstream.status_code))
        headers = {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP_HEADERS}
        headers.pop("content-encoding", None)
        return Response(upstream.content, upstream.status_code, headers=headers)

    async def _forward(self, request: Request, path: str) -> httpx.Response:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_HEADERS}
        async with httpx.AsyncClient(trust_env=False, timeout=60) as client:
            return await client.request(
                request.method, self.upstream + path, headers=headers, content=await request.body()
            )

    def up(self) -> FaultProxy:
        """Listen (again) on the proxy's port."""
        if self._thread is not None:
            return self
        app = Starlette(
            routes=[Route("/{path:path}", self._handle, methods=["GET", "POST", "PUT", "DELETE"])]
        )
        config = uvicorn.Config(app, log_config=None, log_level="warning", access_log=False)
        self._server = uvicorn.Server(config)
        sock = self._sock if self._sock.fileno() != -1 else self._rebind()
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self._server.serve(sockets=[sock])),  # type: ignore[union-attr]
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started and time.monotonic() < deadline:
            time.sleep(0.01)
        return self

    def _rebind(self) -> socket.socket:
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", self.port))
        return self._sock

    def down(self) -> None:
        """Stop listening: new connections are refused."""
        if self._server is None or self._thread is None:
            return
        self._server.should_exit = True
        self._thread.join(10)
        self._sock.close()
        self._server = None
        self._thread = None

    def __enter__(self) -> FaultProxy:
        return self.up()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.down()
