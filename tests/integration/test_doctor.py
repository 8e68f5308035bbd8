"""`bugsink-sync doctor` against the real Bugsink and the Gitea test server: every check,
passing and failing, and nothing changed anywhere."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.lab.bugsink import BugsinkProject, BugsinkServer
from tests.lab.gitea.fixtures import GiteaRepoFixture
from tests.lab.runs import clean_env, cli_env, run_cli

pytestmark = pytest.mark.bugsink

ORDER = [
    "configuration",
    "Bugsink reachable",
    "Bugsink token",
    "Bugsink features",
    "Bugsink token capabilities",
]


def doctor(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(env, cwd, "doctor", *args)


def checks(result: subprocess.CompletedProcess[str]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in json.loads(result.stdout)["checks"]}


def test_all_good_and_nothing_changed(
    bugsink: BugsinkServer, bugsink_project: BugsinkProject, gitea: GiteaRepoFixture, tmp_path: Path
) -> None:
    env = cli_env(bugsink, gitea, tmp_path, bugsink_project.slug)
    result = doctor(env, tmp_path, "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    found = checks(result)
    assert list(found)[: len(ORDER)] == ORDER
    assert all(c["status"] == "ok" for c in found.values()), found
    assert "will be created" in found["Gitea labels"]["detail"]
    assert found["Gitea reachable"]["detail"].endswith("Gitea 1.26.3")
    assert gitea.issues() == [] and gitea.state.labels_of(gitea.owner, gitea.repo) == []
    assert not (tmp_path / "state.sqlite3").exists()
    text = doctor(env, tmp_path)
    assert text.returncode == 0 and text.stdout.startswith("✓ configuration: valid")


def test_a_bad_configuration_is_the_first_failure(tmp_path: Path) -> None:
    result = doctor(clean_env() | {"BUGSINK_URL": "http://127.0.0.1:1"}, tmp_path)
    assert result.returncode == 1
    assert result.stdout.startswith("✗ configuration: BUGSINK_TOKEN")


@pytest.mark.parametrize(
    ("change", "name", "expected"),
    [
        ({"BUGSINK_URL": "http://127.0.0.1:1"}, "Bugsink reachable", "connection refused"),
        ({"BUGSINK_TOKEN": "f" * 40}, "Bugsink token", "HTTP 401"),
        ({"GITEA_URL": "http://127.0.0.1:1"}, "Gitea reachable", "connection refused"),
        ({"GITEA_API_TOKEN": "wrong"}, "Gitea token", "HTTP 401"),
        ({"GITEA_REPO": "no-such-repo"}, "Gitea repository", "HTTP 404"),
        ({"REDIS_URL": "redis://127.0.0.1:1"}, "state store", "Redis"),
    ],
)
def test_each_failure_names_what_and_how_to_fix(
    change: dict[str, str],
    name: str,
    expected: str,
    bugsink: BugsinkServer,
    bugsink_project: BugsinkProject,
    gitea: GiteaRepoFixture,
    tmp_path: Path,
) -> None:
    env = cli_env(bugsink, gitea, tmp_path, bugsink_project.slug) | change
    result = doctor(env, tmp_path, "--json")
    assert result.returncode == 1
    check = checks(result)[name]
    assert check["status"] == "fail" and expected in check["detail"] and check["fix"]
    for secret in (bugsink.token, gitea.token):
        assert secret not in result.stdout + result.stderr


def test_scoped_tokens_misspelt_slugs_read_only_gitea_and_disabled_sync(
    bugsink: BugsinkServer, bugsink_project: BugsinkProject, gitea: GiteaRepoFixture, tmp_path: Path
) -> None:
    scoped = bugsink.create_token(projects_read=True, issues_read=True, events_read=True)
    gitea.state.add_token(
        gitea.login, "readonly-token", ["read:issue", "read:repository", "read:user"]
    )
    config = tmp_path / "typo.toml"
    config.write_text(f'[[projects]]\nslug = "{bugsink_project.slug[:-1]}x"\n')
    env = cli_env(bugsink, gitea, tmp_path, bugsink_project.slug) | {
        "BUGSINK_TOKEN": scoped,
        "GITEA_API_TOKEN": "readonly-token",
        "BUGSINK_SYNC_CONFIG": str(config),
        "BUGSINK_SYNC_ENABLED": "false",
    }
    found = checks(doctor(env, tmp_path, "--json"))
    capabilities = found["Bugsink token capabilities"]
    assert capabilities["status"] == "warn"
    assert "issues:triage" in capabilities["detail"] and "issues:comment" in capabilities["detail"]
    project = found[f"project {bugsink_project.slug[:-1]}x"]
    assert (
        project["status"] == "fail" and f"did you mean '{bugsink_project.slug}'?" in project["fix"]
    )
    assert found["Gitea issue permission"]["status"] == "fail"
    assert "write:issue" in found["Gitea issue permission"]["detail"]
    assert found["sync enabled"]["status"] == "warn"
