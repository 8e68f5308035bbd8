"""Run the fake Gitea on a real loopback socket, in a background thread.

Real HTTP (not an in-process ASGI transport) so the product's client is exercised with its
real connection pool, timeouts and error types — and so "drop" faults can cut the TCP
connection, which an in-process transport cannot do.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from types import TracebackType

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from .app import create_app, register_transport, unregister_transport
from .state import GiteaState


class _DroppableH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, registering each connection's transport for "drop" faults."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Disable Nagle and remember the transport under the scope's (server, client).

        uvicorn writes headers and body separately; with Nagle on, the body waits for the
        client's delayed ACK (~40 ms a request on Linux loopback).
        """
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)
        register_transport(self.server, self.client, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget the transport."""
        unregister_transport(self.server, self.client)
        super().connection_lost(exc)


class GiteaTestServer:
    """A GiteaState served over HTTP on 127.0.0.1; use as a context manager.

    `url` is the root URL without a trailing slash (`http://127.0.0.1:PORT`); the API is at
    `api_url` (`url + "/api/v1"`). `state.root_url` is set to `url + "/"`, so the URLs in
    responses point back at this server, like Gitea's ROOT_URL.
    """

    def __init__(
        self, state: GiteaState | None = None, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.state = state or GiteaState()
        self.host = host
        self.port = port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Root URL, e.g. http://127.0.0.1:41234 (no /api/v1, no trailing slash)."""
        return f"http://{self.host}:{self.port}"

    @property
    def api_url(self) -> str:
        """Base URL of the API."""
        return self.url + "/api/v1"

    def start(self, timeout: float = 10.0) -> GiteaTestServer:
        """Bind the port, start uvicorn in a daemon thread and wait until it answers."""
        if self._thread is not None:
            raise RuntimeError("server already started")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        self.state.root_url = self.url + "/"
        config = uvicorn.Config(
            create_app(self.state),
            http=_DroppableH11Protocol,
            ws="none",
            lifespan="off",
            log_config=None,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._run, args=(self._server, sock), name=f"gitea-test-{self.port}", daemon=True
        )
        self._thread.start()
        self._wait_until_listening(timeout)
        return self

    @staticmethod
    def _run(server: uvicorn.Server, sock: socket.socket) -> None:
        asyncio.run(server.serve(sockets=[sock]))

    def _wait_until_listening(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._server is not None and self._server.started:
                try:
                    with socket.create_connection((self.host, self.port), timeout=0.5):
                        return
                except OSError:
                    pass
            if self._thread is not None and not self._thread.is_alive():
                raise RuntimeError("Gitea test server thread died during start-up")
            time.sleep(0.01)
        raise TimeoutError(f"Gitea test server did not start within {timeout}s")

    def stop(self, timeout: float = 5.0) -> None:
        """Ask uvicorn to exit and join the thread (idempotent)."""
        if self._server is None or self._thread is None:
            return
        self._server.should_exit = True
        self._thread.join(timeout)
        self._server = None
        self._thread = None

    def __enter__(self) -> GiteaTestServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"GiteaTestServer(url={self.url!r})"
