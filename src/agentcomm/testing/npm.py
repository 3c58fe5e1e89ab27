"""npm packages used as foreign peers in tests, installed once into ``.cache/npm``.

Interop tests run programs we did not write (an MCP server, a NATS client in
JavaScript, ...). :func:`npm_package` installs a pinned version into the project's
git-ignored ``.cache/npm`` the first time and returns where it is; without node/npm
or the registry the test skips locally and fails under ``CI=true``
(:func:`~agentcomm.testing.extras.missing`).

Example::

    root = npm_package("nats", "2.29.3")   # .cache/npm/node_modules/nats
    node = node_binary()
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from agentcomm.testing.extras import missing

__all__ = ["CACHE", "node_binary", "npm_package"]

#: Where packages go: ``.cache/npm`` of the working directory's project (the tests
#: run from the repository root), or ``$AGENTCOMM_NPM_CACHE``.
CACHE = Path(os.environ.get("AGENTCOMM_NPM_CACHE", Path.cwd() / ".cache" / "npm"))


def node_binary() -> str:
    """The ``node`` executable; skips (fails under ``CI=true``) when absent.

    Example::

        subprocess.run([node_binary(), "peer.mjs"])
    """
    node = shutil.which("node")
    if node is None:
        missing("node is needed for this interop test (apt-get install nodejs npm)")
    return node


def npm_package(name: str, version: str, *, cache: Path | None = None) -> Path:
    """The directory of ``name@version`` under ``cache/node_modules``, installed if needed.

    Example::

        root = npm_package("@modelcontextprotocol/server-everything", "2026.8.31")
    """
    cache = cache or CACHE
    root = cache / "node_modules" / name
    manifest = root / "package.json"
    if manifest.exists() and json.loads(manifest.read_text()).get("version") == version:
        return root
    npm = shutil.which("npm")
    if npm is None:
        missing("npm is needed for this interop test (apt-get install npm)")
    node_binary()
    cache.mkdir(parents=True, exist_ok=True)
    ignore = cache.parent / ".gitignore"
    if cache.parent.name == ".cache" and not ignore.exists():
        ignore.write_text("*\n")
    if not (cache / "package.json").exists():
        (cache / "package.json").write_text('{"private": true}\n')
    proc = subprocess.run(
        [npm, "install", "--no-audit", "--no-fund", "--save-exact", f"{name}@{version}"],
        cwd=cache,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if proc.returncode != 0 or not manifest.exists():
        missing(f"npm install {name}@{version} failed: {proc.stderr[-500:]}")
    return root
