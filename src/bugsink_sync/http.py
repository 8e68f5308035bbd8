"""What the Bugsink and Gitea clients share: typed errors and one careful request function.

Errors name the service, what happened and the fix, keep the server's own message and
status, and never contain a token (requests carry tokens only in headers, which no
message quotes).
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Self

import httpx


class ServiceError(Exception):
    """A remote service failed; `str()` is one line: service, what happened, the fix."""

    def __init__(
        self,
        service: str,
        what: str,
        *,
        fix: str = "",
        status: int | None = None,
        server_message: str = "",
    ) -> None:
        self.service = service
        self.what = what
        self.fix = fix
        self.status = status
        self.server_message = server_message
        super().__init__(self.line())

    def line(self) -> str:
        """The message shown to people."""
        text = f"{self.service}: {self.what}"
        if self.status is not None:
            text += f" (HTTP {self.status}"
            text += f": {self.server_message})" if self.server_message else ")"
        return f"{text}. Fix: {self.fix}" if self.fix else text


class ServiceUnavailable(ServiceError):
    """No usable answer: connection refused, timeout, dropped connection, 5xx or 429."""


class ApiError(ServiceError):
    """The service answered with an error status that retrying will not change."""


class AuthError(ApiError):
    """401 or 403: the token is wrong or lacks a permission; affects every later call too."""


class NotFoundError(ApiError):
    """404: the thing asked for does not exist (or is invisible to this token)."""


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, bounded by attempts and by total time."""

    attempts: int = 4
    base_delay: float = 0.5
    max_delay: float = 8.0
    budget_seconds: float = 60.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait before retry number `attempt` (1-based). A server's Retry-After is
        obeyed as given; the caller gives up when it would pass the time budget."""
        if retry_after is not None:
            return retry_after
        return random.uniform(0, min(self.max_delay, self.base_delay * 2 ** (attempt - 1)))


NO_RETRY = RetryPolicy(attempts=1)
_RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})


def _plain(text: str) -> str:
    """An HTML or text body as one short line (a proxy's or framework's error page)."""
    text = re.sub(r"<(script|style)\b.*?</\1>", " ", text, flags=re.S | re.I)
    return " ".join(re.sub(r"<[^>]+>", " ", text).split())[:160]


def server_message(response: httpx.Response) -> str:
    """The server's own explanation from a JSON error body (Gitea `message`, DRF `detail`)."""
    try:
        body: Any = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return _plain(response.text)
    if isinstance(body, dict):
        for key in ("message", "detail"):
            if isinstance(body.get(key), str):
                return str(body[key])
        return json.dumps(body)[:200]
    if isinstance(body, list):
        return "; ".join(str(item) for item in body)[:200]
    return str(body)[:200]


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


ErrorFactory = Callable[[httpx.Response, str], ServiceError]


@dataclass
class Requester:
    """Sends requests for one service, retrying what is safe to retry.

    `unreachable_fix` is the advice when no answer comes at all; `error_for` turns an
    error response and the action that got it into the service's typed error.
    """

    http: httpx.AsyncClient
    service: str
    unreachable_fix: str
    error_for: ErrorFactory
    retry: RetryPolicy = RetryPolicy()

    async def send(
        self,
        method: str,
        url: str,
        *,
        action: str,
        idempotent: bool | None = None,
        ok_statuses: frozenset[int] = frozenset(),
        **kwargs: Any,
    ) -> httpx.Response:
        """Send one request; return a 2xx (or an `ok_statuses`) response or raise.

        Only idempotent requests are retried: a POST whose answer was lost may have
        taken effect, and sending it again could duplicate it.
        """
        if idempotent is None:
            idempotent = method.upper() in {"GET", "HEAD", "PUT", "DELETE"}
        policy = self.retry if idempotent else NO_RETRY
        deadline = time.monotonic() + policy.budget_seconds
        attempt = 0
        while True:
            attempt += 1
            failure, response = await self._once(method, url, action, kwargs)
            if response is not None and (
                response.is_success or response.status_code in ok_statuses
            ):
                return response
            if response is not None and response.status_code not in _RETRYABLE_STATUS:
                raise self.error_for(response, action)
            wait = policy.delay(attempt, _retry_after(response) if response is not None else None)
            if attempt >= policy.attempts or time.monotonic() + wait > deadline:
                if response is not None:
                    raise self.error_for(response, action)
                raise failure or self._unreachable(action, "got no answer")
            await asyncio.sleep(wait)

    async def _once(
        self, method: str, url: str, action: str, kwargs: dict[str, Any]
    ) -> tuple[ServiceError | None, httpx.Response | None]:
        try:
            response = await self.http.request(method, url, **kwargs)
        except httpx.TimeoutException:
            return self._unreachable(action, "got no answer in time"), None
        except httpx.HTTPError as exc:
            return self._unreachable(action, f"failed: {_reason(exc)}"), None
        return None, response

    def _unreachable(self, action: str, what: str) -> ServiceUnavailable:
        where = public_origin(self.http.base_url)
        return ServiceUnavailable(
            self.service, f"{action} at {where} {what}", fix=self.unreachable_fix
        )


def _reason(exc: httpx.HTTPError) -> str:
    """A short cause such as 'connection refused', without URLs that might carry secrets."""
    cause: BaseException = exc
    while cause.__cause__ is not None or cause.__context__ is not None:
        cause = cause.__cause__ or cause.__context__  # type: ignore[assignment]
    text = str(cause) or type(exc).__name__
    lowered = text.lower()
    if isinstance(exc, httpx.ConnectError):
        if "refused" in lowered or "errno 111" in lowered or "connect call failed" in lowered:
            return "connection refused"
        if "wrong_version_number" in lowered or "wrong version number" in lowered:
            return "the TLS handshake failed: the server speaks plain HTTP, so use http://"
        if "certificate" in lowered:
            return f"the server's TLS certificate was refused ({text[:100]})"
        if "name or service not known" in lowered or "nodename nor servname" in lowered:
            return "host name not found"
        return f"cannot connect: {text[:120]}"
    if isinstance(exc, httpx.RemoteProtocolError):
        return "the connection was closed without an answer"
    return text[:120]


def status_error(service: str, response: httpx.Response, what: str, fix: str) -> ServiceError:
    """The typed error for an error response, by its status."""
    kind: type[ServiceError]
    status = response.status_code
    what = f"{what} ({response.request.method} {response.request.url.path})"
    if status in (401, 403):
        kind = AuthError
    elif status == 404:
        kind = NotFoundError
    elif status in _RETRYABLE_STATUS:
        kind = ServiceUnavailable
    else:
        kind = ApiError
    return kind(service, what, fix=fix, status=status, server_message=server_message(response))


class ServiceClient:
    """The connection pool and the careful `Requester` of one service's API; subclasses add
    the calls. Use as an async context manager, or call `aclose`."""

    def __init__(
        self,
        service: str,
        api_url: str,
        authorization: str,
        *,
        timeout: float,
        retry: RetryPolicy | None,
        transport: httpx.AsyncBaseTransport | None,
        error_for: ErrorFactory,
        unreachable_fix: str,
    ) -> None:
        self._http = httpx.AsyncClient(
            base_url=api_url,
            headers={"Authorization": authorization, "Accept": "application/json"},
            timeout=timeouts(timeout),
            transport=transport,
            trust_env=False,  # the URLs are configured; a proxy from the environment is not
        )
        self._requests = Requester(
            self._http, service, unreachable_fix, error_for, retry or RetryPolicy()
        )

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def public_origin(url: httpx.URL) -> str:
    """`scheme://host[:port]`: never user-info, path or query, which may hold secrets."""
    port = f":{url.port}" if url.port else ""
    return f"{url.scheme}://{url.host}{port}"


def timeouts(seconds: float) -> httpx.Timeout:
    """`seconds` per read or write, but at most 10 s to connect (and do TLS): a wrong scheme
    or port should fail fast, not after the whole read timeout."""
    return httpx.Timeout(seconds, connect=min(10.0, seconds))
