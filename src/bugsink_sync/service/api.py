"""The admin API (FastAPI): trigger a run, read its status, and the operations endpoints.

Shapes follow the seed: `{"success": true, "data": …}` and, for every error,
`{"success": false, "error": {"code", "message"}}` with an honest status code.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from bugsink_sync.service.auth import AdminPolicy, AuthProblem
from bugsink_sync.service.metrics import CONTENT_TYPE, SyncMetrics
from bugsink_sync.service.runs import SyncRunner
from bugsink_sync.service.schedule import QueueUnavailable, Scheduler, SyncDisabled
from bugsink_sync.state import StateError, StateStore

log = logging.getLogger("bugsink_sync.service")

Check = Callable[[], Awaitable[None]]


@dataclass
class ServiceContext:
    """Everything the app uses, built by the caller (see `service.server`)."""

    scheduler: Scheduler
    runner: SyncRunner
    store: StateStore
    policy: AdminPolicy
    metrics: SyncMetrics
    readiness: Mapping[str, Check]
    grace_seconds: float
    webhook_secret: str | None = None


class ApiProblem(Exception):
    """An error answer: status, machine code, human message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        self.status, self.code, self.message = status, code, message
        super().__init__(message)


def ok(data: Any, status: int = 200) -> JSONResponse:
    """The success envelope."""
    return JSONResponse({"success": True, "data": data}, status_code=status)


def problem(status: int, code: str, message: str) -> JSONResponse:
    """The error envelope."""
    body = {"success": False, "error": {"code": code, "message": message}}
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body, status_code=status, headers=headers)


_HTTP_CODES = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 400: "BAD_REQUEST"}


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiProblem)
    async def _api_problem(_: Request, exc: ApiProblem) -> JSONResponse:
        return problem(exc.status, exc.code, exc.message)

    @app.exception_handler(AuthProblem)
    async def _auth_problem(_: Request, exc: AuthProblem) -> JSONResponse:
        return problem(exc.status, exc.code, exc.message)

    @app.exception_handler(QueueUnavailable)
    async def _queue(_: Request, exc: QueueUnavailable) -> JSONResponse:
        return problem(503, "QUEUE_UNAVAILABLE", str(exc))

    @app.exception_handler(StateError)
    async def _state(_: Request, exc: StateError) -> JSONResponse:
        return problem(503, "STATE_UNAVAILABLE", str(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "HTTP_ERROR")
        return problem(exc.status_code, code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return problem(422, "INVALID_REQUEST", "the request is not valid")

    @app.exception_handler(Exception)
    async def _crash(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error in the admin API")
        return problem(500, "INTERNAL_ERROR", "internal error; see the service log")


def require_admin(
    request: Request, authorization: Annotated[str | None, Header()] = None
) -> dict[str, Any]:
    """Dependency: the claims of a valid admin token, or a 401/403 answer."""
    policy: AdminPolicy = request.app.state.policy
    return policy.check(authorization)


Admin = Annotated[dict[str, Any], Depends(require_admin)]


def create_app(ctx: ServiceContext) -> FastAPI:
    """The ASGI app; its lifespan starts and stops the scheduler."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await ctx.scheduler.start()
        try:
            yield
        finally:
            await ctx.scheduler.stop(ctx.grace_seconds)
            await ctx.store.aclose()

    app = FastAPI(
        title="bugsink-sync", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None
    )
    app.state.policy = ctx.policy
    _install_error_handlers(app)

    @app.post("/api/admin/bugsink/sync")
    async def trigger_sync(_: Admin) -> JSONResponse:
        try:
            record = await ctx.scheduler.trigger()
        except SyncDisabled:
            raise ApiProblem(
                409,
                "SYNC_DISABLED",
                "sync is disabled: set BUGSINK_SYNC_ENABLED=true on this service to enable it",
            ) from None
        if not record.ok:
            raise ApiProblem(502, "SYNC_FAILED", str(record.error))
        return ok(record.summary)

    @app.get("/api/admin/bugsink/sync/status")
    async def sync_status(_: Admin) -> JSONResponse:
        last = await ctx.runner.last_run()
        next_run = await ctx.scheduler.next_run()
        return ok(
            {
                "enabled": ctx.scheduler.enabled,
                "last_run": last.finished_at if last else None,
                "next_run": next_run.strftime("%Y-%m-%dT%H:%M:%SZ") if next_run else None,
                "total_synced": await ctx.store.count(),
                "backlog": last.backlog if last else 0,
            }
        )

    @app.get("/api/admin/workers/status")
    async def workers_status(_: Admin) -> JSONResponse:
        return ok(await ctx.scheduler.workers_status())

    @app.post("/api/bugsink/webhook/{secret}")
    async def webhook(secret: str, request: Request) -> JSONResponse:
        """Bugsink's custom webhook (2.5.1+): queue a sync of the issue and answer at once.
        Bugsink signs nothing, so the secret is in the path, compared in constant time."""
        expected = ctx.webhook_secret
        if expected is None or not hmac.compare_digest(secret.encode(), expected.encode()):
            raise ApiProblem(404, "NOT_FOUND", "Not Found")
        payload = await _json_object(request)
        if payload.get("alert_reason") == "TEST":
            return ok({"queued": False, "test": True})
        issue_id = payload.get("id")
        if not isinstance(issue_id, str) or not _UUID.fullmatch(issue_id):
            raise ApiProblem(422, "INVALID_REQUEST", "the payload has no Bugsink issue id")
        try:
            await ctx.scheduler.enqueue_issue(issue_id)
        except SyncDisabled:
            raise ApiProblem(
                409, "SYNC_DISABLED", "sync is disabled: set BUGSINK_SYNC_ENABLED=true"
            ) from None
        return ok({"queued": True, "issue": issue_id}, status=202)

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        return ok({"status": "alive"})

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        results = {name: await _probe(check) for name, check in ctx.readiness.items()}
        failing = {name: why for name, why in results.items() if why != "ok"}
        if failing:
            message = "; ".join(f"{name}: {why}" for name, why in failing.items())
            return problem(503, "NOT_READY", message)
        return ok(results)

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(ctx.metrics.render(), media_type=CONTENT_TYPE)

    return app


_UUID = re.compile(
    r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}"
)


async def _json_object(request: Request) -> dict[str, Any]:
    try:
        payload = json.loads(await request.body())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ApiProblem(422, "INVALID_REQUEST", "the body is not JSON") from None
    if not isinstance(payload, dict):
        raise ApiProblem(422, "INVALID_REQUEST", "the body is not a JSON object")
    return payload


async def _probe(check: Check) -> str:
    try:
        await check()
    except Exception as exc:  # any failure means "not ready", with its reason
        return str(exc) or type(exc).__name__
    return "ok"
