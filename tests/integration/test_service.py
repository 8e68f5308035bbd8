"""`bugsink-sync serve`: the schedule, the admin API, auth, and shutdown, as real processes
on the real Redis, against the real Bugsink and the Gitea test server."""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import jwt
import pytest
import redis
from bullmq import Queue

from tests.lab.bugsink import BugsinkProject, BugsinkServer, send_events
from tests.lab.gitea.fixtures import GiteaRepoFixture
from tests.lab.runs import service_env
from tests.lab.service import JWT_SECRET, ServiceProcess, admin_token, start_service

pytestmark = pytest.mark.bugsink

QUEUE_DB, STATE_DB = 11, 12
Start = Callable[..., ServiceProcess]


@pytest.fixture
def clean_redis() -> Iterator[None]:
    for db in (QUEUE_DB, STATE_DB):
        redis.Redis(db=db).flushdb()
    yield
    for db in (QUEUE_DB, STATE_DB):
        redis.Redis(db=db).flushdb()


@pytest.fixture
def start(
    bugsink: BugsinkServer,
    bugsink_project: BugsinkProject,
    gitea: GiteaRepoFixture,
    tmp_path: Path,
    clean_redis: None,
) -> Iterator[Start]:
    """Start service processes for this test's project; all are stopped afterwards."""
    started: list[ServiceProcess] = []
    config = tmp_path / "sync.toml"
    config.write_text(f'[[projects]]\nslug = "{bugsink_project.slug}"\nlabels = ["env:test"]\n')

    def _start(redis_backed: bool = True, **env: str) -> ServiceProcess:
        state = tmp_path / "state.sqlite3"
        base = service_env(bugsink.url, bugsink.token, gitea, config, state)
        base["BUGSINK_SYNC_INTERVAL"] = "60"
        if redis_backed:
            base |= {
                "REDIS_URL": "redis://127.0.0.1:6379",
                "BUGSINK_SYNC_QUEUE_DB": str(QUEUE_DB),
                "BUGSINK_SYNC_STATE_DB": str(STATE_DB),
            }
        service = start_service({**base, **env}, tmp_path / f"service-{len(started)}.log")
        started.append(service)
        return service

    yield _start
    for service in started:
        service.kill()


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def overlaps(runs: list[tuple[float, float, str]]) -> int:
    ordered = sorted(runs)
    return sum(1 for a, b in itertools.pairwise(ordered) if b[0] < a[1])


def test_schedule_fires_and_status_reports_it(
    start: Start, bugsink: BugsinkServer, bugsink_project: BugsinkProject, gitea: GiteaRepoFixture
) -> None:
    send_events(bugsink_project.dsn, ["zero_div", "key_error"])
    service = start(BUGSINK_SYNC_INTERVAL="0.03")  # 1.8 s

    wait_for(lambda: len(service.runs()) >= 3, 20, "three scheduled runs")

    assert {trigger for _, _, trigger in service.runs()} == {"schedule"}
    assert len(gitea.issues()) == 2
    status = service.get("/api/admin/bugsink/sync/status").json()
    assert status["success"] is True
    data = status["data"]
    assert data["enabled"] is True and data["total_synced"] == 2
    assert data["last_run"].endswith("Z") and data["next_run"].endswith("Z")
    assert data["next_run"] >= data["last_run"]
    assert bugsink.list_issues(bugsink_project.id, state="unresolved") == []


def test_two_services_on_one_redis_never_overlap(
    start: Start, bugsink_project: BugsinkProject, gitea: GiteaRepoFixture
) -> None:
    send_events(bugsink_project.dsn, ["zero_div"])
    gitea.state.add_fault("GET", r"/labels$", "delay", times=None, seconds=0.8)  # slow runs
    first = start(BUGSINK_SYNC_INTERVAL="0.01")  # 0.6 s: shorter than a run
    second = start(BUGSINK_SYNC_INTERVAL="0.01")

    wait_for(lambda: len(first.runs()) + len(second.runs()) >= 6, 40, "six runs")
    for service in (first, second):
        service.post("/api/admin/bugsink/sync")  # manual triggers join in too

    runs = first.runs() + second.runs()
    assert len(runs) >= 6
    assert overlaps(runs) == 0
    assert len(gitea.issues()) == 1


def test_concurrent_triggers_coalesce_into_one_run(
    start: Start, bugsink_project: BugsinkProject, gitea: GiteaRepoFixture
) -> None:
    send_events(bugsink_project.dsn, ["zero_div", "key_error"])
    service = start()
    wait_for(lambda: len(service.runs()) == 1, 20, "the start-up run")
    send_events(bugsink_project.dsn, ["value_error"])
    gitea.add_fault("POST", "/issues$", "delay", times=1, seconds=1.0)

    async def fire(count: int) -> list[httpx.Response]:
        async with httpx.AsyncClient(headers=service.headers, timeout=60) as client:
            url = service.url + "/api/admin/bugsink/sync"
            return await asyncio.gather(*(client.post(url) for _ in range(count)))

    answers = asyncio.run(fire(10))

    assert [a.status_code for a in answers] == [200] * 10
    bodies = [a.json()["data"] for a in answers]
    assert all(body == bodies[0] for body in bodies)
    assert bodies[0]["synced"] == 1
    assert len(service.runs()) == 2  # the start-up run and one for all ten triggers
    assert len(gitea.issues()) == 3


@pytest.mark.parametrize(
    ("header", "status", "code"),
    [
        (None, 401, "UNAUTHORIZED"),
        ("Basic dXNlcjpwYXNz", 401, "UNAUTHORIZED"),
        ("Bearer not-a-jwt", 401, "INVALID_TOKEN"),
        ("Bearer " + admin_token("another-secret-that-is-long-enough-1234"), 401, "INVALID_TOKEN"),
        ("Bearer " + admin_token(exp=int(time.time()) - 10), 401, "TOKEN_EXPIRED"),
        (
            "Bearer " + jwt.encode({"role": "admin"}, JWT_SECRET, algorithm="HS256"),
            401,
            "INVALID_TOKEN",
        ),
        (
            "Bearer " + jwt.encode({"role": "admin", "exp": 2**31}, None, algorithm="none"),
            401,
            "INVALID_TOKEN",
        ),
        (
            "Bearer " + jwt.encode({"role": "admin", "exp": 2**31}, JWT_SECRET, algorithm="HS512"),
            401,
            "INVALID_TOKEN",
        ),
        ("Bearer " + admin_token(role="viewer"), 403, "FORBIDDEN"),
        ("Bearer " + admin_token(), 200, None),
    ],
)
def test_admin_endpoints_require_an_admin_jwt(
    start: Start, header: str | None, status: int, code: str | None
) -> None:
    service = start(BUGSINK_SYNC_ENABLED="false")
    headers = {"Authorization": header} if header else {}
    for path in ("/api/admin/bugsink/sync/status", "/api/admin/workers/status"):
        answer = httpx.get(service.url + path, headers=headers)
        assert answer.status_code == status
        if code:
            assert answer.json() == {
                "success": False,
                "error": {"code": code, "message": answer.json()["error"]["message"]},
            }
    trigger = httpx.post(service.url + "/api/admin/bugsink/sync", headers=headers)
    assert trigger.status_code == (409 if status == 200 else status)


def test_role_claim_and_value_are_configurable(start: Start) -> None:
    service = start(BUGSINK_SYNC_JWT_ROLE_CLAIM="scope", BUGSINK_SYNC_JWT_ADMIN_VALUE="ops")
    allowed = {"Authorization": "Bearer " + admin_token(scope="ops", role=None)}
    refused = {"Authorization": "Bearer " + admin_token()}  # role=admin, but no scope=ops
    assert httpx.get(service.url + "/api/admin/workers/status", headers=allowed).status_code == 200
    assert httpx.get(service.url + "/api/admin/workers/status", headers=refused).status_code == 403


def test_disabled_service_never_runs_and_refuses_triggers(
    start: Start, bugsink_project: BugsinkProject, gitea: GiteaRepoFixture
) -> None:
    send_events(bugsink_project.dsn, ["zero_div"])
    service = start(BUGSINK_SYNC_ENABLED="false", BUGSINK_SYNC_INTERVAL="0.01")

    refused = service.post("/api/admin/bugsink/sync")
    time.sleep(2)

    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "SYNC_DISABLED"
    assert "BUGSINK_SYNC_ENABLED=true" in refused.json()["error"]["message"]
    status = service.get("/api/admin/bugsink/sync/status").json()["data"]
    assert status == {
        "enabled": False,
        "last_run": None,
        "next_run": None,
        "total_synced": 0,
        "backlog": 0,
    }
    workers = service.get("/api/admin/workers/status").json()["data"]
    assert workers["worker"]["running"] is False
    assert service.runs() == [] and gitea.issues() == []


def test_sigterm_lets_the_running_sync_finish(
    start: Start, bugsink: BugsinkServer, bugsink_project: BugsinkProject, gitea: GiteaRepoFixture
) -> None:
    gitea.add_fault("POST", "/issues$", "delay", times=1, seconds=2.0)
    send_events(bugsink_project.dsn, ["zero_div"])
    service = start()
    wait_for(
        lambda: any(r.method == "POST" and r.path.endswith("/issues") for r in gitea.requests()),
        20,
        "the create",
    )

    began = time.monotonic()
    status = service.terminate(timeout=30)

    assert status == 0
    assert 0.5 < time.monotonic() - began < 10
    assert [r[2] for r in service.runs()] == ["schedule"]
    assert len(gitea.issues()) == 1
    assert bugsink.list_issues(bugsink_project.id, state="unresolved") == []


def test_sigterm_gives_up_on_a_run_after_the_shutdown_timeout(
    start: Start, bugsink_project: BugsinkProject, gitea: GiteaRepoFixture
) -> None:
    gitea.add_fault("GET", "/labels$", "delay", times=1, seconds=20.0)
    send_events(bugsink_project.dsn, ["zero_div"])
    service = start(BUGSINK_SYNC_SHUTDOWN_TIMEOUT="2")
    wait_for(lambda: any(e["message"] == "sync run started" for e in service.logs()), 20, "a run")

    began = time.monotonic()
    status = service.terminate(timeout=30)

    assert time.monotonic() - began < 8
    assert status == 0
    assert any("did not finish within 2 s" in e["message"] for e in service.logs())


def test_operations_endpoints(
    start: Start, bugsink_project: BugsinkProject, gitea: GiteaRepoFixture
) -> None:
    send_events(bugsink_project.dsn, ["zero_div"])
    service = start()
    wait_for(lambda: len(service.runs()) == 1, 20, "the start-up run")

    assert httpx.get(service.url + "/healthz").json() == {
        "success": True,
        "data": {"status": "alive"},
    }
    ready = httpx.get(service.url + "/readyz")
    assert ready.status_code == 200
    assert ready.json()["data"] == {"redis": "ok", "bugsink": "ok", "gitea": "ok"}
    metrics = httpx.get(service.url + "/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    assert 'bugsink_sync_runs_total{outcome="completed"} 1.0' in text
    assert 'bugsink_sync_issues_total{result="synced"} 1.0' in text
    assert "bugsink_sync_run_duration_seconds_count 1.0" in text
    assert "bugsink_sync_last_success_timestamp_seconds " in text
    workers = service.get("/api/admin/workers/status").json()["data"]
    assert workers["mode"] == "bullmq"
    assert (
        workers["queue"]["name"] == "bugsink-sync" and workers["queue"]["global_concurrency"] == 1
    )
    assert workers["scheduler"]["every_ms"] == 3_600_000
    missing = service.get("/api/admin/nothing-here")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "NOT_FOUND"


def test_readyz_names_the_service_that_does_not_answer(start: Start) -> None:
    service = start(GITEA_URL="http://127.0.0.1:1", BUGSINK_SYNC_ENABLED="false")
    ready = httpx.get(service.url + "/readyz")
    assert ready.status_code == 503
    error = ready.json()["error"]
    assert error["code"] == "NOT_READY"
    assert error["message"].startswith("gitea: Gitea: ")
    assert "bugsink" not in error["message"].split(";")[0].lower().replace("gitea", "")


def test_without_redis_an_in_process_schedule_runs_and_triggers_coalesce(
    start: Start, bugsink_project: BugsinkProject, gitea: GiteaRepoFixture, tmp_path: Path
) -> None:
    send_events(bugsink_project.dsn, ["zero_div"])
    service = start(redis_backed=False, BUGSINK_SYNC_INTERVAL="0.03")
    wait_for(lambda: len(service.runs()) >= 1, 20, "a scheduled run")
    gitea.add_fault("GET", "/labels$", "delay", times=1, seconds=1.0)

    async def fire() -> list[httpx.Response]:
        async with httpx.AsyncClient(headers=service.headers, timeout=60) as client:
            url = service.url + "/api/admin/bugsink/sync"
            return await asyncio.gather(*(client.post(url) for _ in range(5)))

    answers = asyncio.run(fire())
    assert {a.status_code for a in answers} == {200}
    assert overlaps(service.runs()) == 0
    assert len(gitea.issues()) == 1
    status = service.get("/api/admin/bugsink/sync/status").json()["data"]
    assert status["total_synced"] == 1 and status["last_run"] is not None
    assert (tmp_path / "state.sqlite3").exists()
    assert os.path.getsize(tmp_path / "state.sqlite3") > 0


def test_registering_the_schedule_at_every_start_is_idempotent(start: Start) -> None:
    async def scheduler_state() -> tuple[int, int]:
        queue = Queue("bugsink-sync", {"connection": f"redis://127.0.0.1:6379/{QUEUE_DB}"})
        try:
            count = await queue.getJobSchedulersCount()
            scheduler = await queue.getJobScheduler("bugsink-sync-every")
            return count, int(scheduler["next"])
        finally:
            await queue.close()

    first = start()
    wait_for(lambda: len(first.runs()) == 1, 20, "the start-up run")
    before = asyncio.run(scheduler_state())
    assert first.terminate() == 0
    second = start()
    time.sleep(1)
    after = asyncio.run(scheduler_state())

    assert before[0] == after[0] == 1
    assert after[1] == before[1]  # same next run: no extra run, no reset cadence
    assert second.runs() == []


WEBHOOK_SECRET = "hook-" + "s3cr3t" * 4


@pytest.mark.parametrize("redis_backed", [True, False])
def test_a_real_bugsink_webhook_syncs_a_new_error_at_once(
    redis_backed: bool,
    start: Start,
    bugsink: BugsinkServer,
    bugsink_project: BugsinkProject,
    gitea: GiteaRepoFixture,
) -> None:
    service = start(redis_backed=redis_backed, BUGSINK_SYNC_WEBHOOK_SECRET=WEBHOOK_SECRET)
    wait_for(lambda: len(service.runs()) == 1, 20, "the start-up run")
    bugsink.add_webhook(bugsink_project.id, f"{service.url}/api/bugsink/webhook/{WEBHOOK_SECRET}")

    began = time.monotonic()
    send_events(bugsink_project.dsn, ["zero_div"])  # Bugsink calls the webhook while ingesting
    wait_for(lambda: len(service.runs()) == 2, 15, "the webhook's sync")

    assert time.monotonic() - began < 10  # not the hourly schedule
    assert len(gitea.issues()) == 1
    assert [r[2] for r in service.runs()] == ["schedule", "webhook"]
    assert bugsink.list_issues(bugsink_project.id, state="unresolved") == []
    logged = service.log_path.read_text()
    assert WEBHOOK_SECRET not in logged and "/api/bugsink/webhook/[redacted]" in logged


def test_webhook_answers(start: Start) -> None:
    service = start(BUGSINK_SYNC_WEBHOOK_SECRET=WEBHOOK_SECRET, BUGSINK_SYNC_ENABLED="false")
    url = f"{service.url}/api/bugsink/webhook/"
    wrong = httpx.post(url + "not-the-secret-at-all", json={"id": "x"})
    assert wrong.status_code == 404 and wrong.json()["error"]["code"] == "NOT_FOUND"
    test = httpx.post(url + WEBHOOK_SECRET, json={"alert_reason": "TEST", "id": "TEST-1"})
    assert test.status_code == 200 and test.json()["data"] == {"queued": False, "test": True}
    garbage = httpx.post(url + WEBHOOK_SECRET, content=b"not json")
    assert garbage.status_code == 422 and garbage.json()["error"]["code"] == "INVALID_REQUEST"
    no_id = httpx.post(url + WEBHOOK_SECRET, json={"alert_reason": "NEW"})
    assert no_id.status_code == 422
    disabled = httpx.post(
        url + WEBHOOK_SECRET,
        json={"alert_reason": "NEW", "id": "282fde12-b570-4dc4-afef-289fb2488b03"},
    )
    assert disabled.status_code == 409 and disabled.json()["error"]["code"] == "SYNC_DISABLED"
