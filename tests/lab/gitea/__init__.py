"""A Gitea 1.26-compatible test double served over real HTTP on loopback.

See README.md in this directory for the quirks it reproduces and how to inject faults.
"""

from .app import create_app
from .server import GiteaTestServer
from .state import GiteaState, ServerConfig

__all__ = ["GiteaState", "GiteaTestServer", "ServerConfig", "create_app"]
