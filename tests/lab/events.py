"""Raw events of SDKs other than Python's, as their envelopes carry them."""

from __future__ import annotations

from typing import Any


def javascript_error(environment: str, url: str) -> dict[str, Any]:
    """A browser TypeError with minified frames, as the JavaScript SDK sends it."""
    frames = [
        {"filename": "/assets/index-4f2a.js", "function": "Xe", "lineno": 1, "colno": 88211},
        {"filename": "/assets/index-4f2a.js", "function": "t", "lineno": 1, "colno": 4242},
    ]
    return {
        "platform": "javascript",
        "level": "error",
        "environment": environment,
        "exception": {
            "values": [
                {
                    "type": "TypeError",
                    "value": "t.map is not a function",
                    "stacktrace": {"frames": [frame | {"in_app": True} for frame in frames]},
                }
            ]
        },
        "request": {"url": url, "method": "GET"},
    }
