"""A real browser for the dashboard tests: headless Chromium driven by Playwright.

The browser is Debian's ``chromium`` package: when it is missing the set-up installs
it with ``apt-get`` (as root, after ``apt-get update``); when it still cannot be had
the tests skip locally with the reason and fail under ``CI=true``. Playwright comes
from PyPI (the ``dev`` extra) and is pointed at that executable: its own browser
download is never used. Every test gets a fresh page; console errors and uncaught
page errors are collected and a test that leaves any fails.

Screenshots go to the test's temporary directory; with ``AGENTCOMM_SCREENSHOTS=DIR``
they are copied there too (``docs/img`` is made that way).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from agentcomm.testing.extras import missing, require_module

require_module("starlette")
require_module("uvicorn")
require_module("playwright")

_CANDIDATES = ("chromium", "chromium-browser", "google-chrome")


def _find() -> str | None:
    for name in _CANDIDATES:
        path = shutil.which(name)
        if path is not None:
            return path
    return None


def _install() -> str:
    """``apt-get install chromium`` when possible; the reason it failed otherwise."""
    if shutil.which("apt-get") is None:
        return "apt-get is not available"
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        return "installing it needs root (apt-get install chromium)"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "chromium"]):
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"{' '.join(cmd)} failed: {exc}"
        if proc.returncode != 0:
            return f"{' '.join(cmd)} failed: {proc.stderr[-400:]}"
    return ""


@pytest.fixture(scope="session")
def chromium_executable() -> str:
    """The system Chromium's path, installed on first use when missing."""
    path = _find()
    if path is None:
        why = _install()
        path = _find()
        if path is None:
            missing(f"headless Chromium is not installed and could not be: {why}")
    return path


def _copy(path: Path, to: Path) -> None:
    to.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, to / path.name)


@dataclass
class Browser:
    """A page in headless Chromium, with the errors it logged and a screenshot helper."""

    page: Any
    shots: Path
    errors: list[str] = field(default_factory=list)

    async def leave(self) -> None:
        """Close the page's connections (as a person closing the tab) before the server stops."""
        await self.page.goto("about:blank")

    async def shot(self, name: str, *, full_page: bool = False) -> Path:
        path = self.shots / f"{name}.png"
        await self.page.screenshot(path=str(path), full_page=full_page)
        copy = os.environ.get("AGENTCOMM_SCREENSHOTS")
        if copy:
            _copy(path, Path(copy))
        return path


@pytest.fixture
async def browser(chromium_executable: str, tmp_path: Path) -> AsyncIterator[Browser]:
    """A fresh page; fails the test if the page logged an error to its console."""
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(
            executable_path=chromium_executable, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            context = await chromium.new_context(viewport={"width": 1200, "height": 720})
            page = await context.new_page()
            shots = tmp_path / "screenshots"
            shots.mkdir()
            b = Browser(page, shots)
            page.on(
                "console",
                lambda msg: b.errors.append(msg.text) if msg.type == "error" else None,
            )
            page.on("pageerror", lambda exc: b.errors.append(f"uncaught: {exc}"))
            yield b
            await context.close()
        finally:
            await chromium.close()
    assert b.errors == [], f"the page logged errors: {b.errors}"
