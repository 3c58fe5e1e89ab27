"""Optional dependencies in tests: skip when one is missing locally, fail under ``CI=true``.

``pytest.importorskip`` alone would let a CI image without an extra pass with the
tests that need it silently skipped; :func:`require_module` skips only on a
developer's machine and fails where the environment says ``CI=true``, as the
broker fixtures do.

Example::

    mcp = require_module("mcp")          # at a test module's top, or inside a test
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import NoReturn

__all__ = ["missing", "require_module"]

#: The extra that installs each optional top-level module.
_EXTRAS = {
    "nats": "nats",
    "mcp": "mcp",
    "mcp_types": "mcp",
    "pydantic": "pydantic",
    "opentelemetry": "otel",
    "prometheus_client": "otel",
    "rich": "cli",
    "starlette": "dashboard",
    "uvicorn": "dashboard",
    "playwright": "dev",
    "a2a": "a2a",
}


def missing(reason: str) -> NoReturn:
    """Skip the test with ``reason``; fail it instead when ``CI=true``.

    Example::

        if shutil.which("nats-server") is None: missing("nats-server is not installed")
    """
    import pytest  # here: programs and benchmarks import this module without pytest

    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: a missing test dependency fails the run)")
    pytest.skip(reason)


def require_module(name: str) -> ModuleType:
    """Import ``name``; when it is not installed, :func:`missing` says which extra to add.

    Example::

        nats = require_module("nats")
        metrics_sdk = require_module("opentelemetry.sdk.metrics")
    """
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        extra = _EXTRAS.get(name.split(".", 1)[0])
        hint = f"pip install 'agentcomm[{extra}]'" if extra else f"pip install {name}"
        missing(f"{name} is not installed ({exc}): {hint}")
