"""The parts of Gitea's (and Forgejo's) API answers that the sync reads."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Label(_Model):
    """A repository or organisation label; `color` comes without `#`."""

    id: int
    name: str
    color: str = ""


class Issue(_Model):
    """An issue; `number` is its index in the repository, used in every path."""

    id: int
    number: int
    title: str
    body: str = ""
    state: str = "open"
    html_url: str = ""
    labels: list[Label] = Field(default_factory=list)
    created_at: datetime | None = None


class Repository(_Model):
    """The target repository, with the flags that decide whether issues can be created."""

    full_name: str
    html_url: str = ""
    has_issues: bool = True
    archived: bool = False
