"""Settings and the project/label file: defaults, aliases, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from bugsink_sync.config import (
    DEFAULT_SYNC_CONFIG,
    SOURCE_LABEL,
    ConfigError,
    load_settings,
    load_sync_config,
    normalise_colour,
)

SECRET = "0123456789abcdef0123456789abcdef01234567"
BASE_ENV = {
    "BUGSINK_URL": "https://bugsink.example.com/",
    "BUGSINK_TOKEN": SECRET,
    "GITEA_URL": "https://gitea.example.com",
    "GITEA_API_TOKEN": "gitea-" + SECRET,
    "GITEA_OWNER": "torbo",
    "GITEA_REPO": "flyer-crawler.projectium.com",
}


def test_seed_environment_is_enough() -> None:
    settings = load_settings(BASE_ENV)
    assert settings.bugsink_url == "https://bugsink.example.com"
    assert settings.bugsink_token.get_secret_value() == SECRET
    assert settings.enabled is False
    assert settings.interval_minutes == 15
    assert settings.redis_url is None
    assert settings.state_db == 15


def test_bugsink_api_token_is_accepted_as_alias() -> None:
    env = {k: v for k, v in BASE_ENV.items() if k != "BUGSINK_TOKEN"}
    settings = load_settings({**env, "BUGSINK_API_TOKEN": SECRET})
    assert settings.bugsink_token.get_secret_value() == SECRET


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"BUGSINK_URL": "bugsink.example.com"}, "BUGSINK_URL must be an http"),
        ({"GITEA_API_TOKEN": "   "}, "GITEA_API_TOKEN is empty"),
        ({"BUGSINK_SYNC_INTERVAL": "0"}, "BUGSINK_SYNC_INTERVAL"),
        ({"BUGSINK_SYNC_INTERVAL": "soon"}, "BUGSINK_SYNC_INTERVAL"),
        ({"BUGSINK_SYNC_ENABLED": "perhaps"}, "BUGSINK_SYNC_ENABLED"),
        ({"REDIS_URL": "localhost:6379"}, "REDIS_URL must start with redis://"),
    ],
)
def test_bad_values_name_the_variable(change: dict[str, str], expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings({**BASE_ENV, **change})
    assert expected in str(err.value)
    assert SECRET not in str(err.value)


def test_missing_variables_are_all_named_and_no_secret_is_shown() -> None:
    with pytest.raises(ConfigError) as err:
        load_settings({"BUGSINK_TOKEN": SECRET, "GITEA_URL": "nonsense " + SECRET})
    message = str(err.value)
    for name in (
        "BUGSINK_URL is not set",
        "GITEA_API_TOKEN is not set",
        "GITEA_OWNER",
        "GITEA_REPO",
    ):
        assert name in message
    assert SECRET not in message


def test_no_file_gives_the_seed_projects_and_labels() -> None:
    config = load_sync_config(None)
    assert config is DEFAULT_SYNC_CONFIG
    assert len(config.projects) == 6
    assert len(config.labels) == 7
    frontend_test = config.project("flyer-crawler-frontend-test")
    assert frontend_test is not None
    assert config.labels_for(frontend_test) == ["bug:frontend", "env:test", SOURCE_LABEL]
    assert config.labels["source:bugsink"] == "#10b981"


def test_file_maps_projects_to_labels(tmp_path: Path) -> None:
    path = tmp_path / "sync.toml"
    path.write_text(
        '[[projects]]\nslug = "shop"\nlabels = ["bug:backend", "env:production"]\n\n'
        '[labels]\n"bug:backend" = "#EA580C"\n"source:bugsink" = "10b981"\n'
    )
    config = load_sync_config(path)
    assert [p.slug for p in config.projects] == ["shop"]
    assert config.labels == {"bug:backend": "#ea580c", "source:bugsink": "#10b981"}
    assert config.colour_of("env:production") == "#6b7280"  # named, no colour: neutral


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[[project]]\nslug = "a"\n', "project: unknown key"),
        ("[[projects]]\nlabels = []\n", "projects[0].slug: is not set"),
        ('[[projects]]\nslug = "a"\n[labels]\n"x" = "red"\n', "colour 'red'"),
        ('[[projects]]\nslug = "a"\n[[projects]]\nslug = "a"\n', "listed twice"),
        ("projects = [", "not valid TOML"),
    ],
)
def test_bad_file_names_the_key(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "sync.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_sync_config(path)
    assert expected in str(err.value)
    assert str(path) in str(err.value)


def test_missing_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_sync_config(tmp_path / "nope.toml")


@pytest.mark.parametrize(
    ("raw", "expected"), [("#E11D48", "#e11d48"), ("e11d48", "#e11d48"), ("#E1D", "#ee11dd")]
)
def test_colours_are_normalised_like_gitea(raw: str, expected: str) -> None:
    assert normalise_colour(raw) == expected


def test_templates_from_the_file(tmp_path: Path) -> None:
    (tmp_path / "body.md").write_text("Type ${type}\n\n${stacktrace}\n")
    path = tmp_path / "sync.toml"
    path.write_text(
        '[[projects]]\nslug = "a"\n\n[templates]\ntitle = "${project}: [${type}] ${message}"\n'
        'body_file = "body.md"\n'
    )
    templates = load_sync_config(path).issue_templates
    assert templates.title == "${project}: [${type}] ${message}"
    assert templates.body == "Type ${type}\n\n${stacktrace}\n"
    assert load_sync_config(None).issue_templates.body.startswith("## Error Details")


@pytest.mark.parametrize(
    ("templates", "expected"),
    [
        ('title = "${nope}"', "templates.title: unknown placeholder ${nope}"),
        ('body = "costs $5"', "templates.body: has a '$'"),
        ('body = "x"\nbody_file = "y"', "give body or body_file, not both"),
        ('body_file = "missing.md"', "templates.body_file: cannot read"),
    ],
)
def test_bad_templates_are_named(tmp_path: Path, templates: str, expected: str) -> None:
    path = tmp_path / "sync.toml"
    path.write_text(f'[[projects]]\nslug = "a"\n\n[templates]\n{templates}\n')
    with pytest.raises(ConfigError) as err:
        load_sync_config(path)
    assert expected in str(err.value)
