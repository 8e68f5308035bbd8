"""Fixtures shared by every test: the real Bugsink and the Gitea test server."""

pytest_plugins = ["tests.lab.bugsink_fixtures", "tests.lab.gitea.fixtures"]
