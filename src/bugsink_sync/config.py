"""Settings from the environment and the project/label map from a TOML file.

Everything the program reads from outside is validated here, once, so that a bad value
stops the program with a message naming the variable or key, and never its secret value.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from bugsink_sync.render import (
    BODY_FIELDS,
    DEFAULT_BODY_TEMPLATE,
    DEFAULT_TITLE_TEMPLATE,
    TITLE_FIELDS,
    Templates,
    template_problems,
)

SOURCE_LABEL = "source:bugsink"
DEFAULT_LABEL_COLOUR = "#6b7280"
_COLOUR = re.compile(r"^#?([0-9a-fA-F]{3}|[0-9a-fA-F]{6})$")


class ConfigError(Exception):
    """A setting or config key is missing or wrong; the message says which and how to fix it."""


class ProjectConfig(BaseModel):
    """One Bugsink project to sync, the Gitea labels its issues get, and its noise filters
    (levels and environments match after trimming and case-folding; empty means all)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    slug: str = Field(min_length=1)
    labels: tuple[str, ...] = ()
    min_occurrences: int = Field(default=1, ge=1)
    levels: frozenset[str] = frozenset()
    environments: frozenset[str] = frozenset()

    @field_validator("levels", "environments")
    @classmethod
    def _folded(cls, values: frozenset[str]) -> frozenset[str]:
        return frozenset(fold(value) for value in values)

    @field_validator("labels")
    @classmethod
    def _labels_not_blank(cls, labels: tuple[str, ...]) -> tuple[str, ...]:
        if any(not name.strip() for name in labels):
            raise ValueError("label names must not be blank")
        return labels


def fold(value: object) -> str:
    """How levels and environments are compared: trimmed and case-folded."""
    return str(value or "").strip().casefold()


class SyncPolicy(BaseModel):
    """`[sync]`: what happens beyond creating issues (see the README's feature list)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    regressions: Literal["reopen", "comment", "ignore"] = "reopen"
    backlinks: bool = True
    two_way: bool = False
    not_fixed_labels: frozenset[str] = frozenset({"wontfix", "duplicate", "invalid"})
    not_fixed_action: Literal["mute", "leave"] = "mute"
    include_muted: bool = False
    max_new_issues: int = Field(default=25, ge=1, le=10_000)


class TemplatesConfig(BaseModel):
    """`[templates]`: the issue title and body, `${name}` placeholders (see the README)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    title: str = DEFAULT_TITLE_TEMPLATE
    body: str | None = None
    body_file: Path | None = None

    @field_validator("title")
    @classmethod
    def _title(cls, text: str) -> str:
        problems = template_problems(text, TITLE_FIELDS)
        if problems:
            raise ValueError("; ".join(problems))
        return text

    @field_validator("body")
    @classmethod
    def _body(cls, text: str | None) -> str | None:
        problems = template_problems(text, BODY_FIELDS) if text is not None else []
        if problems:
            raise ValueError("; ".join(problems))
        return text

    @model_validator(mode="after")
    def _one_body(self) -> TemplatesConfig:
        if self.body is not None and self.body_file is not None:
            raise ValueError("give body or body_file, not both")
        return self

    def load(self, base: Path) -> Templates:
        """The templates, reading `body_file` relative to the config file's folder."""
        body = self.body
        if self.body_file is not None:
            path = self.body_file if self.body_file.is_absolute() else base / self.body_file
            try:
                body = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError(f"templates.body_file: cannot read {path}: {exc}") from None
            problems = template_problems(body, BODY_FIELDS)
            if problems:
                raise ConfigError(f"templates.body_file {path}: " + "; ".join(problems))
        return Templates(title=self.title, body=body or DEFAULT_BODY_TEMPLATE)


class SyncConfig(BaseModel):
    """The `BUGSINK_SYNC_CONFIG` file: which projects to sync and the labels' colours."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    projects: tuple[ProjectConfig, ...] = Field(min_length=1)
    labels: dict[str, str] = Field(default_factory=dict)
    templates: TemplatesConfig = Field(default_factory=TemplatesConfig)
    sync: SyncPolicy = Field(default_factory=SyncPolicy)
    _templates: Templates = PrivateAttr(default_factory=Templates)
    _origin: str = PrivateAttr(default="the built-in defaults (no BUGSINK_SYNC_CONFIG)")

    @property
    def origin(self) -> str:
        """Where this configuration came from, for messages."""
        return self._origin

    @property
    def issue_templates(self) -> Templates:
        """The title and body templates to render issues with."""
        return self._templates

    @field_validator("labels")
    @classmethod
    def _colours_valid(cls, labels: dict[str, str]) -> dict[str, str]:
        for name, colour in labels.items():
            if not _COLOUR.match(colour.strip()):
                raise ValueError(f"label {name!r}: colour {colour!r} is not #rgb or #rrggbb")
        return {name: normalise_colour(colour) for name, colour in labels.items()}

    @model_validator(mode="after")
    def _slugs_unique(self) -> SyncConfig:
        seen: set[str] = set()
        for project in self.projects:
            if project.slug in seen:
                raise ValueError(f"project {project.slug!r} is listed twice")
            seen.add(project.slug)
        return self

    def project(self, slug: str) -> ProjectConfig | None:
        """The configured project with this slug, if any."""
        return next((p for p in self.projects if p.slug == slug), None)

    def labels_for(self, project: ProjectConfig) -> list[str]:
        """The labels an issue of this project gets: its own, then `source:bugsink`, no repeats."""
        return list(dict.fromkeys([*project.labels, SOURCE_LABEL]))

    def colour_of(self, label: str) -> str:
        """The configured colour of a label, or a neutral grey when the file gives none."""
        return self.labels.get(label, DEFAULT_LABEL_COLOUR)


def normalise_colour(colour: str) -> str:
    """`E11D48`, `#e11d48` and `#E1D` all become Gitea's stored form `#e11d48`."""
    digits = colour.strip().lstrip("#").lower()
    if len(digits) == 3:
        digits = "".join(c * 2 for c in digits)
    return f"#{digits}"


def _seed_project(slug: str, kind: str, env: str) -> ProjectConfig:
    return ProjectConfig(slug=slug, labels=(f"bug:{kind}", f"env:{env}"))


# The seed deployment's six projects and seven labels, so that it needs no file.
DEFAULT_SYNC_CONFIG = SyncConfig(
    projects=(
        _seed_project("flyer-crawler-backend", "backend", "production"),
        _seed_project("flyer-crawler-backend-test", "backend", "test"),
        _seed_project("flyer-crawler-frontend", "frontend", "production"),
        _seed_project("flyer-crawler-frontend-test", "frontend", "test"),
        _seed_project("flyer-crawler-infrastructure", "infrastructure", "production"),
        _seed_project("flyer-crawler-test-infrastructure", "infrastructure", "test"),
    ),
    labels={
        "bug:frontend": "#e11d48",
        "bug:backend": "#ea580c",
        "bug:infrastructure": "#7c3aed",
        "env:production": "#dc2626",
        "env:test": "#2563eb",
        "env:development": "#6b7280",
        SOURCE_LABEL: "#10b981",
    },
)


def _default_sqlite_path() -> Path:
    state_home = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state_home) / "bugsink-sync" / "state.sqlite3"


def _http_url(value: str, api_path: str) -> str:
    value = value.strip().rstrip("/")
    if not re.match(r"^https?://[^/\s]+", value):
        raise ValueError("must be an http:// or https:// URL, e.g. https://example.com")
    if api_path in value + "/":
        raise ValueError(f"must be the base URL, without {api_path.rstrip('/')}")
    return value


class Settings(BaseSettings):
    """Environment variables (and a `.env` file in the working directory, if present)."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    bugsink_url: str = Field(validation_alias="BUGSINK_URL")
    bugsink_token: SecretStr = Field(
        validation_alias=AliasChoices("BUGSINK_TOKEN", "BUGSINK_API_TOKEN")
    )
    gitea_url: str = Field(validation_alias="GITEA_URL")
    gitea_api_token: SecretStr = Field(validation_alias="GITEA_API_TOKEN")
    gitea_owner: str = Field(min_length=1, validation_alias="GITEA_OWNER")
    gitea_repo: str = Field(min_length=1, validation_alias="GITEA_REPO")
    enabled: bool = Field(default=False, validation_alias="BUGSINK_SYNC_ENABLED")
    # Minutes; fractions are allowed (0.05 = 3 s), which the tests use for quick schedules.
    interval_minutes: float = Field(
        default=15, gt=0, le=24 * 60, validation_alias="BUGSINK_SYNC_INTERVAL"
    )
    redis_url: str | None = Field(default=None, validation_alias="REDIS_URL")
    state_db: int = Field(default=15, ge=0, le=15, validation_alias="BUGSINK_SYNC_STATE_DB")
    queue_db: int = Field(default=1, ge=0, le=15, validation_alias="BUGSINK_SYNC_QUEUE_DB")
    sqlite_path: Path = Field(
        default_factory=_default_sqlite_path, validation_alias="BUGSINK_SYNC_SQLITE_PATH"
    )
    config_file: Path | None = Field(default=None, validation_alias="BUGSINK_SYNC_CONFIG")
    http_timeout: float = Field(default=30.0, gt=0, le=600, validation_alias="BUGSINK_SYNC_TIMEOUT")
    body_budget: int = Field(
        default=48 * 1024, ge=8 * 1024, le=1024 * 1024, validation_alias="BUGSINK_SYNC_BODY_BUDGET"
    )
    log_format: Literal["text", "json"] = Field(
        default="text", validation_alias="BUGSINK_SYNC_LOG_FORMAT"
    )
    jwt_secret: SecretStr | None = Field(default=None, validation_alias="JWT_SECRET")
    webhook_secret: SecretStr | None = Field(
        default=None, validation_alias="BUGSINK_SYNC_WEBHOOK_SECRET"
    )
    jwt_role_claim: str = Field(
        default="role", min_length=1, validation_alias="BUGSINK_SYNC_JWT_ROLE_CLAIM"
    )
    jwt_admin_value: str = Field(
        default="admin", min_length=1, validation_alias="BUGSINK_SYNC_JWT_ADMIN_VALUE"
    )
    lock_wait: float = Field(default=60, ge=0, le=3600, validation_alias="BUGSINK_SYNC_LOCK_WAIT")
    lock_ttl: float = Field(default=30, ge=1, le=600, validation_alias="BUGSINK_SYNC_LOCK_TTL")
    settle_seconds: float = Field(
        default=60, ge=0, le=3600, validation_alias="BUGSINK_SYNC_SETTLE_SECONDS"
    )
    shutdown_timeout: float = Field(
        default=60, gt=0, le=3600, validation_alias="BUGSINK_SYNC_SHUTDOWN_TIMEOUT"
    )

    @field_validator("bugsink_url")
    @classmethod
    def _bugsink_url(cls, value: str) -> str:
        return _http_url(value, "/api/")

    @field_validator("gitea_url")
    @classmethod
    def _gitea_url(cls, value: str) -> str:
        return _http_url(value, "/api/v1/")

    @field_validator("enabled", mode="before")
    @classmethod
    def _enabled(cls, value: object) -> object:
        return value.strip() if isinstance(value, str) else value

    @field_validator("redis_url")
    @classmethod
    def _redis(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if not re.match(r"^(redis|rediss|unix)://", value.strip()):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value.strip()

    @field_validator("jwt_secret")
    @classmethod
    def _jwt_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        if len(value.get_secret_value().encode()) < 32:
            raise ValueError("must be at least 32 bytes (HS256 needs a long random key)")
        return value

    @field_validator("webhook_secret")
    @classmethod
    def _webhook_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        if not re.fullmatch(r"[A-Za-z0-9_-]{16,200}", value.get_secret_value()):
            raise ValueError("must be 16 to 200 URL-safe characters (letters, digits, - and _)")
        return value

    def secret_values(self) -> list[str]:
        """Every secret setting's value, for the log redaction."""
        secrets = [self.bugsink_token, self.gitea_api_token, self.jwt_secret, self.webhook_secret]
        values = [s.get_secret_value() for s in secrets if s is not None]
        if self.redis_url and "@" in self.redis_url:  # redis://user:password@host
            values.append(self.redis_url.split("@", 1)[0].split("//", 1)[-1])
        return values

    @property
    def interval_seconds(self) -> float:
        """The schedule's period in seconds."""
        return self.interval_minutes * 60

    @field_validator("bugsink_token", "gitea_api_token")
    @classmethod
    def _token_not_blank(cls, value: SecretStr) -> SecretStr:
        token = value.get_secret_value().strip()
        if not token:
            raise ValueError("is empty")
        if not re.fullmatch(r"[\x21-\x7e]+", token):
            raise ValueError(
                "holds a space, line break or non-ASCII character; paste the token alone"
            )
        return SecretStr(token)


# Field name -> the variable a user sets, for messages.
_ENV_NAMES = {
    "bugsink_url": "BUGSINK_URL",
    "bugsink_token": "BUGSINK_TOKEN (or BUGSINK_API_TOKEN)",
    "gitea_url": "GITEA_URL",
    "gitea_api_token": "GITEA_API_TOKEN",
    "gitea_owner": "GITEA_OWNER",
    "gitea_repo": "GITEA_REPO",
    "enabled": "BUGSINK_SYNC_ENABLED",
    "interval_minutes": "BUGSINK_SYNC_INTERVAL",
    "redis_url": "REDIS_URL",
    "state_db": "BUGSINK_SYNC_STATE_DB",
    "sqlite_path": "BUGSINK_SYNC_SQLITE_PATH",
    "config_file": "BUGSINK_SYNC_CONFIG",
    "http_timeout": "BUGSINK_SYNC_TIMEOUT",
    "log_format": "BUGSINK_SYNC_LOG_FORMAT",
    "queue_db": "BUGSINK_SYNC_QUEUE_DB",
    "jwt_secret": "JWT_SECRET",
    "webhook_secret": "BUGSINK_SYNC_WEBHOOK_SECRET",
    "jwt_role_claim": "BUGSINK_SYNC_JWT_ROLE_CLAIM",
    "jwt_admin_value": "BUGSINK_SYNC_JWT_ADMIN_VALUE",
    "shutdown_timeout": "BUGSINK_SYNC_SHUTDOWN_TIMEOUT",
    "lock_wait": "BUGSINK_SYNC_LOCK_WAIT",
    "lock_ttl": "BUGSINK_SYNC_LOCK_TTL",
    "settle_seconds": "BUGSINK_SYNC_SETTLE_SECONDS",
    "body_budget": "BUGSINK_SYNC_BODY_BUDGET",
}


def _env_name(loc: tuple[int | str, ...]) -> str:
    key = str(loc[0]) if loc else "?"
    return _ENV_NAMES.get(key, key.upper())


_PLAIN = {
    "missing": "is not set",
    "bool_parsing": "must be true or false",
    "bool_type": "must be true or false",
    "string_type": "must be a string",
    "tuple_type": "must be a list",
    "list_type": "must be a list",
    "dict_type": "must be a table",
    "model_type": "must be a table",
    "int_parsing": "must be a whole number",
    "float_parsing": "must be a number",
    "extra_forbidden": "unknown key",
}


def _describe(error: Mapping[str, Any]) -> str:
    """One problem, in plain words, without the offending value: it may be a secret."""
    if error["loc"] == ("projects",) and error["type"] in {"tuple_type", "list_type"}:
        return "must be an array of tables: write [[projects]] (double brackets)"
    if error["loc"] == ("projects",) and error["type"] == "too_short":
        return "needs at least one [[projects]] entry with a slug"
    return _PLAIN.get(error["type"]) or str(error["msg"]).removeprefix("Value error, ")


def _without_follow_ons(errors: list[Any]) -> list[Any]:
    """A broken [[projects]] entry also makes the list too short; say only the cause."""
    entry_errors = any(len(e["loc"]) > 1 and e["loc"][0] == "projects" for e in errors)
    return [e for e in errors if not (entry_errors and e["type"] == "too_short")]


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read settings from `env` (default: the process environment and `.env`)."""
    try:
        if env is None:
            return Settings()
        return Settings.model_validate({k.upper(): v for k, v in env.items()})
    except ValidationError as exc:
        problems = [f"{_env_name(e['loc'])} {_describe(e)}" for e in exc.errors()]
        raise ConfigError(
            "configuration: " + "; ".join(problems) + " (see README, 'Configuration')"
        ) from None


def _key_path(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for part in loc:
        parts.append(f"[{part}]" if isinstance(part, int) else ("." if parts else "") + part)
    return "".join(parts) or "(top level)"


def load_sync_config(path: Path | None) -> SyncConfig:
    """Read the project/label map, or return the seed's defaults when no file is configured."""
    if path is None:
        return DEFAULT_SYNC_CONFIG
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"BUGSINK_SYNC_CONFIG: file {path} does not exist; fix the path or unset it"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"BUGSINK_SYNC_CONFIG: cannot read {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"BUGSINK_SYNC_CONFIG: {path} is not valid TOML: {exc}") from None
    try:
        config = SyncConfig.model_validate(raw)
    except ValidationError as exc:
        problems = [
            f"{_key_path(e['loc'])}: {_describe(e)}" for e in _without_follow_ons(exc.errors())
        ]
        raise ConfigError(f"BUGSINK_SYNC_CONFIG {path}: " + "; ".join(problems)) from None
    config._origin = f"BUGSINK_SYNC_CONFIG {path}"
    config._templates = config.templates.load(path.parent)
    return config
