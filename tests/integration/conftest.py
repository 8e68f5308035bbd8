from tests.lab.bugsink_fixtures import *  # noqa: F403
