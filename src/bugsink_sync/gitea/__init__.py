"""Gitea (or Forgejo): the client for the issue and label API and the models it returns."""

from bugsink_sync.gitea.client import GiteaClient
from bugsink_sync.gitea.models import Issue, Label, Repository

__all__ = ["GiteaClient", "Issue", "Label", "Repository"]
