"""Interoperability with an MCP server we did not write: the reference "everything" server.

The session fixture installs ``@modelcontextprotocol/server-everything`` from the npm
registry into ``.cache/npm`` (git-ignored) and the tests talk to it over stdio. Without
node/npm (or the registry) the tests skip locally, but fail when ``CI=true``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from agentcomm.testing.extras import require_module

require_module("mcp")

from agentcomm import Runtime, UnknownHandler, ValidationError  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache" / "npm"
PACKAGE = "@modelcontextprotocol/server-everything"
VERSION = "2026.8.31"
ENTRY = CACHE / "node_modules" / PACKAGE / "dist" / "index.js"


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: this interop test must run in CI)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def everything_command() -> list[str]:
    """The stdio command of the reference server, installed once per session."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        _unavailable("node and npm are needed for the MCP interop tests")
        raise AssertionError("unreachable")
    version_file = CACHE / "node_modules" / PACKAGE / "package.json"
    installed = version_file.exists() and json.loads(version_file.read_text())["version"] == VERSION
    if not installed:
        CACHE.mkdir(parents=True, exist_ok=True)
        (ROOT / ".cache" / ".gitignore").write_text("*\n")
        manifest = CACHE / "package.json"
        if not manifest.exists():
            manifest.write_text('{"private": true}\n')
        proc = subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", f"{PACKAGE}@{VERSION}"],
            cwd=CACHE,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if proc.returncode != 0 or not ENTRY.exists():
            _unavailable(f"npm install {PACKAGE}@{VERSION} failed: {proc.stderr[-500:]}")
    return [node, str(ENTRY), "stdio"]


@pytest.mark.timeout(300)  # the first test may include the npm install
async def test_lists_and_calls_the_reference_server(everything_command: list[str]) -> None:
    async with Runtime() as rt:
        conn = await rt.tools.connect("everything", command=everything_command, timeout=20.0)
        names = conn.tool_names()
        assert {"echo", "get-sum", "get-tiny-image", "get-structured-content"} <= set(names)
        me = rt.agent("me")
        # the ordinary direct request reaches the MCP tools
        assert await me.request("everything", "echo", {"message": "hello"}) == "Echo: hello"
        assert await me.request("everything", "get-sum", {"a": 2, "b": 3}) == (
            "The sum of 2 and 3 is 5."
        )
        weather = await me.request("everything", "get-structured-content", {"location": "Chicago"})
        assert isinstance(weather, dict)
        assert "temperature" in weather
        image = await conn.call_tool("get-tiny-image", {})
        assert any(isinstance(b, dict) and b.get("type") == "image" for b in image)


async def test_reference_server_errors_and_catalogue(everything_command: list[str]) -> None:
    async with Runtime() as rt:
        await rt.tools.connect("everything", command=everything_command, timeout=20.0)
        me = rt.agent("me")
        with pytest.raises(ValidationError, match="'b' is a required property"):
            await me.request("everything", "get-sum", {"a": 2})
        with pytest.raises(ValidationError, match="is not one of"):
            await me.request("everything", "get-structured-content", {"location": "Paris"})
        with pytest.raises(UnknownHandler):
            await me.request("everything", "no-such-tool", {})
        infos = {i.name: i for i in rt.tools.catalogue() if i.server == "everything"}
        assert infos["echo"].input_schema["properties"]["message"]["type"] == "string"
        assert infos["echo"].source == "mcp"
        defs = {d["name"]: d for d in rt.tools.anthropic_tools(agents=["everything"])}
        assert defs["everything__get-sum"]["input_schema"]["required"] == ["a", "b"]
        oai = {d["function"]["name"] for d in rt.tools.openai_tools(agents=["everything"])}
        assert "everything__echo" in oai
