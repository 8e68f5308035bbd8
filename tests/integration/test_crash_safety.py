"""The invariants under faults: lost answers, dropped connections, outages, a wiped state
store, parallel runs and SIGKILL at random moments, against the real Bugsink (behind a
fault proxy where its calls must fail) and the Gitea test server."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.lab.bugsink import BugsinkProject, BugsinkServer, send_events
from tests.lab.gitea.fixtures import GiteaRepoFixture, make_gitea_repo
from tests.lab.gitea.server import GiteaTestServer
from tests.lab.invariants import StoreLocation, check_invariants
from tests.lab.proxy import FaultProxy
from tests.lab.runs import cli_env, run_cli

pytestmark = pytest.mark.bugsink

REDIS_DB = 10
SEED = int(os.environ.get("BUGSINK_SYNC_CRASH_SEED", "20261203"))


@pytest.fixture
def proxy(bugsink: BugsinkServer) -> Iterator[FaultProxy]:
    with FaultProxy(bugsink.url) as p:
        yield p


@pytest.fixture
def clean_redis() -> Iterator[None]:
    redis.Redis(db=REDIS_DB).flushdb()
    yield
    redis.Redis(db=REDIS_DB).flushdb()


def env_for(
    bugsink_url: str, token: str, gitea: GiteaRepoFixture, tmp_path: Path, slug: str, **extra: str
) -> dict[str, str]:
    """Settings for this test's runs: short lock expiry, patient lock wait, 5 s timeouts."""
    tuned = {
        "BUGSINK_SYNC_LOCK_TTL": "2",
        "BUGSINK_SYNC_LOCK_WAIT": "60",
        "BUGSINK_SYNC_TIMEOUT": "5",
        "BUGSINK_SYNC_SETTLE_SECONDS": "1",  # a killed run's create lands within a second here
    }
    return cli_env((bugsink_url, token), gitea, tmp_path, slug, name=slug, **(tuned | extra))


def sync(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(env, Path.cwd(), "sync", *args, timeout=300)


def spawn(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "bugsink_sync.cli", "sync"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def sync_until_issues(
    env: dict[str, str], gitea: GiteaRepoFixture, count: int, *args: str
) -> subprocess.Popen[str]:
    """Start a sync and return once it has created `count` Gitea issues (mid-run)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "bugsink_sync.cli", "sync", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while len(gitea.issues()) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    return process


def start_redis(port: int) -> subprocess.Popen[bytes]:
    """A throw-away Redis that keeps nothing, answering when this returns."""
    server = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    client.close()
    return server


def backend_env(
    backend: str, bugsink_url: str, token: str, gitea: GiteaRepoFixture, tmp_path: Path, slug: str
) -> tuple[dict[str, str], StoreLocation]:
    """Settings for the "sqlite" or "redis" state store (the Redis DB emptied first), and
    where the test reads that store."""
    if backend == "sqlite":
        env = env_for(bugsink_url, token, gitea, tmp_path, slug)
        return env, sqlite_of(env)
    redis.Redis(db=REDIS_DB).flushdb()
    redis_env = {"REDIS_URL": "redis://127.0.0.1:6379", "BUGSINK_SYNC_STATE_DB": str(REDIS_DB)}
    env = env_for(bugsink_url, token, gitea, tmp_path, slug, **redis_env)
    return env, StoreLocation(redis_db=REDIS_DB)


def sqlite_of(env: dict[str, str]) -> StoreLocation:
    return StoreLocation(sqlite_path=Path(env["BUGSINK_SYNC_SQLITE_PATH"]))


# --- lost answers and dropped connections ----------------------------------------------------


@pytest.mark.parametrize("kind", ["lost_response", "drop"])
def test_a_create_whose_answer_is_lost_is_found_by_its_marker_not_repeated(
    kind: str,
    bugsink: BugsinkServer,
    bugsink_project: BugsinkProject,
    gitea: GiteaRepoFixture,
    tmp_path: Path,
) -> None:
    send_events(bugsink_project.dsn, ["zero_div", "key_error", "value_error"])
    gitea.add_fault("POST", "/issues$", kind, times=2)
    env = env_for(bugsink.url, bugsink.token, gitea, tmp_path, bugsink_project.slug)

    result = sync(env, "--json")

    assert result.returncode == 0, result.stderr
    assert len(gitea.issues()) == 3
    posts = [r for r in gitea.requests() if r.method == "POST" and r.path.endswith("/issues")]
    assert len(posts) == 3  # each create sent once, the lost ones adopted by their markers
    check_invariants(bugsink, bugsink_project.id, gitea, sqlite_of(env), completed=True)


def test_a_create_that_never_reached_gitea_is_created_by_the_next_run(
    bugsink: BugsinkServer, bugsink_project: BugsinkProject, gitea: GiteaRepoFixture, tmp_path: Path
) -> None:
    send_events(bugsink_project.dsn, ["zero_div", "key_error"])
    gitea.add_fault("POST", "/issues$", "error", times=1, status=502)
    env = env_for(bugsink.url, bugsink.token, gitea, tmp_path, bugsink_project.slug)

    first = sync(env, "--json")
    assert first.returncode == 0
    assert '"failed": 1' in first.stdout
    assert len(gitea.issues()) == 1
    check_invariants(bugsink, bugsink_project.id, gitea, sqlite_of(env), completed=False)

    second = sync(env, "--json")
    assert second.returncode == 0 and '"synced": 1' in second.stdout
    check_invariants(bugsink, bugsink_project.id, gitea, sqlite_of(env), completed=True)


def test_rate_limits_and_server_errors_on_reads_are_retried(
    bugsink: BugsinkServer,
    bugsink_project: BugsinkProject,
    proxy: FaultProxy,
    gitea: GiteaRepoFixture,
    tmp_path: Path,
) -> None:
    send_events(bugsink_project.dsn, ["zero_div"])
    gitea.add_fault("GET", "/labels$", "rate_limit", times=1, retry_after=1)
    gitea.add_fault("GET", "/labels$", "error", times=1, status=503)
    proxy.add_fault("GET", "/api/canonical/0/issues/$", "error", times=2, status=502)
    proxy.add_fault("POST", "/resolve/$", "lost_response", times=1)
    env = env_for(proxy.url, bugsink.token, gitea, tmp_path, bugsink_project.slug)

    result = sync(env, "--json")

    assert result.returncode == 0, result.stderr
    assert '"synced": 1' in result.stdout and '"failed": 0' in result.stdout
    resolves = [r for r in proxy.requests if r[1].endswith("/resolve/")]
    assert [status for _, _, status in resolves] == [500, 400]  # lost, then "already resolved"
    check_invariants(bugsink, bugsink_project.id, gitea, sqlite_of(env), completed=True)


# --- outages -----------------------------------------------------------------------------------


def test_bugsink_going_down_mid_run_ends_the_run_clearly_and_the_next_picks_up(
    bugsink: BugsinkServer,
    bugsink_project: BugsinkProject,
    proxy: FaultProxy,
    gitea: GiteaRepoFixture,
    tmp_path: Path,
) -> None:
    send_events(bugsink_project.dsn, ["unique:outage"], count=5)
    gitea.add_fault("POST", "/issues$", "delay", times=None, seconds=0.3)
    env = env_for(proxy.url, bugsink.token, gitea, tmp_path, bugsink_project.slug)
    process = sync_until_issues(env, gitea, 2, "--json")
    proxy.down()
    out, err = process.communicate(timeout=120)

    assert process.returncode == 1
    assert "Bugsink: " in err and "BUGSINK_URL" in err and "connection refused" in err
    assert '"error": "Bugsink: ' in out
    check_invariants(bugsink, bugsink_project.id, gitea, sqlite_of(env), completed=False)
    proxy.up()
    again = sync(env)
    assert again.returncode == 0, again.stderr
    check_invariants(bugsink, bugsink_project.id, gitea, sqlite_of(env), completed=True)


def test_gitea_going_down_mid_run_ends_the_run_clearly_and_the_next_picks_up(
    bugsink: BugsinkServer, bugsink_project: BugsinkProject, tmp_path: Path
) -> None:
    send_events(bugsink_project.dsn, ["unique:giteaout"], count=4)
    server = GiteaTestServer().start()
    gitea = make_gitea_repo(server)
    gitea.add_fault("POST", "/issues$", "delay", times=None, seconds=0.3)
    env = env_for(bugsink.url, bugsink.token, gitea, tmp_path, bugsink_project.slug)
    process = sync_until_issues(env, gitea, 2)
    port = server.port
    server.stop()
    _, err = process.communicate(timeout=120)
    assert process.returncode == 1
    assert "Gitea: " in err and "GITEA_URL" in err

    restarted = GiteaTestServer(state=gitea.state, port=port).start()
    try:
        again = sync(env)
        assert again.returncode == 0, again.stderr
        check_invariants(bugsink, bugsink_project.id, gitea, sqlite_of(env), completed=True)
    finally:
        restarted.stop()


def test_redis_going_down_mid_run_ends_the_run_clearly_and_loses_nothing(
    bugsink: BugsinkServer, bugsink_project: BugsinkProject, gitea: GiteaRepoFixture, tmp_path: Path
) -> None:
    port = 6390 + random.Random(SEED).randrange(100)
    redis_server = start_redis(port)
    try:
        send_events(bugsink_project.dsn, ["unique:redisout"], count=4)
        gitea.add_fault("POST", "/issues$", "delay", times=None, seconds=0.3)
        url = f"redis://127.0.0.1:{port}"
        env = env_for(
            bugsink.url, bugsink.token, gitea, tmp_path, bugsink_project.slug, REDIS_URL=url
        )
        process = sync_until_issues(env, gitea, 2)
        redis_server.kill()
        redis_server.wait()
        _, err = process.communicate(timeout=120)
        assert process.returncode == 1
        assert "Redis: " in err and "REDIS_URL" in err
        # Bugsink issues resolved so far all have their Gitea issue (I3); nothing is doubled.
        markers = {i.body.rsplit("issue=", 1)[-1] for i in gitea.issues()}
        for issue in bugsink.list_issues(bugsink_project.id):
            if issue["is_resolved"]:
                assert any(issue["id"] in m for m in markers)
        # Redis comes back empty (it kept nothing): the next run restores and completes.
        redis_server = start_redis(port)
        again = sync(env, "--json")
        assert again.returncode == 0, again.stderr
        issues = {i.number for i in gitea.issues()}
        assert len(issues) == 4
        records = redis.Redis(port=port, db=15, decode_responses=True).keys("bugsink:synced:*")
        assert len(records) == 4
    finally:
        redis_server.kill()
        redis_server.wait()


# --- a lost state store ------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_a_wiped_state_store_is_rebuilt_from_markers_before_anything_is_created(
    backend: str,
    bugsink: BugsinkServer,
    bugsink_project: BugsinkProject,
    gitea: GiteaRepoFixture,
    tmp_path: Path,
    clean_redis: None,
) -> None:
    send_events(bugsink_project.dsn, ["zero_div", "key_error", "value_error"])
    env, store = backend_env(
        backend, bugsink.url, bugsink.token, gitea, tmp_path, bugsink_project.slug
    )
    assert sync(env).returncode == 0
    # Two errors come back (regressions) and the state store is lost.
    send_events(bugsink_project.dsn, ["zero_div", "key_error"])
    if backend == "sqlite":
        Path(env["BUGSINK_SYNC_SQLITE_PATH"]).unlink()
    else:
        redis.Redis(db=REDIS_DB).flushdb()

    result = sync(env, "--json")

    assert result.returncode == 0, result.stderr
    assert len(gitea.issues()) == 3  # no duplicates for the two regressions
    assert "restored 3 mapping(s) from their markers" in result.stdout
    assert set(store.records()) == {i["id"] for i in bugsink.list_issues(bugsink_project.id)}


# --- concurrency -----------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_parallel_syncs_take_turns_and_create_each_issue_once(
    backend: str,
    bugsink: BugsinkServer,
    bugsink_project: BugsinkProject,
    gitea: GiteaRepoFixture,
    tmp_path: Path,
    clean_redis: None,
) -> None:
    send_events(bugsink_project.dsn, ["unique:parallel"], count=6)
    gitea.add_fault("POST", "/issues$", "delay", times=None, seconds=0.1)
    env, store = backend_env(
        backend, bugsink.url, bugsink.token, gitea, tmp_path, bugsink_project.slug
    )
    processes = [spawn(env) for _ in range(3)]
    codes = [p.wait(120) for p in processes]

    assert codes == [0, 0, 0]
    check_invariants(bugsink, bugsink_project.id, gitea, store, completed=True)
    assert len(gitea.issues()) == 6


def test_a_busy_lock_makes_the_second_sync_stop_with_the_holder_named(
    bugsink: BugsinkServer, bugsink_project: BugsinkProject, gitea: GiteaRepoFixture, tmp_path: Path
) -> None:
    send_events(bugsink_project.dsn, ["zero_div"])
    gitea.add_fault("GET", "/labels$", "delay", times=1, seconds=4)
    env = env_for(bugsink.url, bugsink.token, gitea, tmp_path, bugsink_project.slug)
    holder = spawn(env)
    time.sleep(1.5)
    second = sync({**env, "BUGSINK_SYNC_LOCK_WAIT": "0.5"})
    assert holder.wait(60) == 0
    assert second.returncode == 1
    assert "another sync holds the run lock" in second.stderr and "pid" in second.stderr


# --- SIGKILL at random moments -----------------------------------------------------------------


def _kill_episodes(
    backend: str,
    target_kills: int,
    bugsink: BugsinkServer,
    gitea_server: GiteaTestServer,
    tmp_path: Path,
    rng: random.Random,
) -> dict[str, int]:
    figures = {"episodes": 0, "kills": 0, "runs": 0, "bugsink_issues": 0, "gitea_issues": 0}
    figures["duplicates"] = 0
    with FaultProxy(bugsink.url) as proxy:
        for episode in range(MAX_EPISODES):
            if figures["kills"] >= target_kills:
                break
            figures["episodes"] = episode + 1
            project = bugsink.create_project(f"kill-{backend}-{episode}-{rng.randrange(10**6)}")
            send_events(project.dsn, [f"unique:kill{backend}{episode}"], count=8)
            gitea = make_gitea_repo(gitea_server)
            gitea.add_fault("POST", "/issues$", "delay", times=None, seconds=0.12)
            proxy.add_fault("POST", "/resolve/$", "delay", times=None, seconds=0.08)
            env, store = backend_env(
                backend, proxy.url, bugsink.token, gitea, tmp_path, project.slug
            )
            for attempt in range(30):
                process = spawn(env)
                figures["runs"] += 1
                try:
                    # Late attempts get more time, so every episode ends with a completed run.
                    status = process.wait(timeout=rng.uniform(0.3, 2.2) + attempt * 0.2)
                except subprocess.TimeoutExpired:
                    process.send_signal(signal.SIGKILL)
                    process.wait()
                    figures["kills"] += 1
                    check_invariants(bugsink, project.id, gitea, store, completed=False)
                    continue
                assert status == 0
                final = check_invariants(bugsink, project.id, gitea, store, completed=True)
                figures["bugsink_issues"] += final["bugsink"]
                figures["gitea_issues"] += final["gitea"]
                figures["duplicates"] += final["duplicates"]
                break
            else:
                raise AssertionError("no run completed in 30 attempts")
    return figures


MAX_EPISODES = 20


@pytest.mark.parametrize(("backend", "target_kills"), [("sqlite", 32), ("redis", 20)])
def test_sigkill_at_random_moments_never_loses_or_duplicates(
    backend: str,
    target_kills: int,
    bugsink: BugsinkServer,
    gitea_server: GiteaTestServer,
    tmp_path: Path,
    clean_redis: None,
    record_property: pytest.RecordProperty,
) -> None:
    rng = random.Random(f"{SEED}-{backend}")
    figures = _kill_episodes(backend, target_kills, bugsink, gitea_server, tmp_path, rng)
    record_property("figures", figures)
    print(f"\n{backend}: {figures} (seed {SEED})")
    assert figures["kills"] >= target_kills  # 32 + 20: over 50 kills in the suite
    assert figures["duplicates"] == 0
    assert figures["gitea_issues"] == figures["bugsink_issues"] == 8 * figures["episodes"]


def test_a_slow_create_is_waited_for_not_repeated(
    bugsink: BugsinkServer, bugsink_project: BugsinkProject, gitea: GiteaRepoFixture, tmp_path: Path
) -> None:
    send_events(bugsink_project.dsn, ["zero_div"])
    gitea.add_fault("POST", "/issues$", "delay", times=1, seconds=4)  # the client gives up first
    env = env_for(
        bugsink.url,
        bugsink.token,
        gitea,
        tmp_path,
        bugsink_project.slug,
        BUGSINK_SYNC_TIMEOUT="1",
        BUGSINK_SYNC_SETTLE_SECONDS="6",
    )
    first = sync(env)
    assert first.returncode == 1 and "got no answer in time" in first.stderr
    began = time.monotonic()
    second = sync(env, "--json")  # at once: the first create has not landed yet
    assert second.returncode == 0, second.stderr
    assert time.monotonic() - began > 3  # it waited for the create to land ...
    assert '"recovered": [{' in second.stdout  # ... and adopted it instead of creating
    assert len(gitea.issues()) == 1
    check_invariants(bugsink, bugsink_project.id, gitea, sqlite_of(env), completed=True)


def test_an_event_bugsink_cannot_serve_does_not_stop_the_sync(
    bugsink: BugsinkServer,
    bugsink_project: BugsinkProject,
    proxy: FaultProxy,
    gitea: GiteaRepoFixture,
    tmp_path: Path,
) -> None:
    send_events(bugsink_project.dsn, ["unique:poison"], count=6)
    proxy.add_fault("GET", r"/api/canonical/0/events/[0-9a-f-]+/$", "error", times=None, status=500)
    env = env_for(proxy.url, bugsink.token, gitea, tmp_path, bugsink_project.slug)
    result = sync(env, "--json")
    assert result.returncode == 0, result.stderr
    assert '"synced": 6' in result.stdout and "could not serve the newest event" in result.stdout
    check_invariants(bugsink, bugsink_project.id, gitea, sqlite_of(env), completed=True)


def test_a_record_that_is_not_one_fails_its_issue_only_and_can_be_forgotten(
    bugsink: BugsinkServer, bugsink_project: BugsinkProject, gitea: GiteaRepoFixture, tmp_path: Path
) -> None:
    import sqlite3

    send_events(bugsink_project.dsn, ["zero_div", "key_error"])
    env = env_for(bugsink.url, bugsink.token, gitea, tmp_path, bugsink_project.slug)
    first, _ = (i["id"] for i in bugsink.list_issues(bugsink_project.id))
    assert run_cli(env, tmp_path, "state", "list").returncode == 0  # creates the file
    with sqlite3.connect(env["BUGSINK_SYNC_SQLITE_PATH"]) as db:
        db.execute("INSERT INTO synced VALUES (?, ?)", (first, '{"synced_at": 1737110000000}'))
    result = sync(env, "--json")
    assert (
        result.returncode == 0 and '"synced": 1' in result.stdout and '"failed": 1' in result.stdout
    )
    forgotten = run_cli(env, tmp_path, "state", "forget", first, "--yes")
    assert forgotten.returncode == 0, forgotten.stderr
    assert sync(env).returncode == 0
    assert len(gitea.issues()) == 2
