"""Interoperability with an MCP server we did not write: the reference "everything" server.

The session fixture installs ``@modelcontextprotocol/server-everything`` from the npm
registry into ``.cache/npm`` (git-ignored) and the tests talk to it over stdio. Without
node/npm (or the registry) the tests skip locally, but fail when ``CI=true``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from agentcomm.testing.extras import require_module

require_module("mcp")

from agentcomm import Image, Message, Progress, Resource, Runtime, UnknownHandler, ValidationError  # noqa: E402
from agentcomm.testing.npm import node_binary, npm_package  # noqa: E402

PACKAGE = "@modelcontextprotocol/server-everything"
VERSION = "2026.8.31"


@pytest.fixture(scope="session")
def everything_command() -> list[str]:
    """The stdio command of the reference server, installed once per session."""
    pkg = npm_package(PACKAGE, VERSION)
    return [node_binary(), str(pkg / "dist" / "index.js"), "stdio"]


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
        assert any(isinstance(b, Image) and b.mime_type == "image/png" for b in image)
        assert conn.server_name == "mcp-servers/everything"
        # a tool that must run as an MCP task is left out, with the reason
        assert "simulate-research-query" not in names
        assert "taskSupport" in conn.skipped["simulate-research-query"]


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


@pytest.mark.timeout(120)
async def test_reference_server_resources_prompts_progress_logs_and_questions(
    everything_command: list[str],
) -> None:
    logs: list[tuple[str, Any]] = []
    got_log = asyncio.Event()

    def on_log(level: str, data: Any, logger: str | None) -> None:
        logs.append((level, data))
        got_log.set()

    asked: list[str] = []

    def on_elicit(message: str, schema: dict[str, Any]) -> dict[str, Any]:
        asked.append(message)
        return {name: _sample_value(prop) for name, prop in schema["properties"].items()}

    async def on_sample(messages: list[Message], options: dict[str, Any]) -> str:
        return f"sampled: {messages[-1].content}"

    async with Runtime() as rt:
        conn = await rt.tools.connect(
            "everything",
            command=everything_command,
            timeout=30.0,
            on_log=on_log,
            on_elicit=on_elicit,
            on_sample=on_sample,
        )
        me = rt.agent("me")
        # resources and templates, binary stays binary
        infos = await conn.list_resources()
        static = [r for r in infos if not r.template]
        assert static
        [doc] = await conn.read_resource(static[0].uri)
        assert isinstance(doc, Resource)
        assert doc.text
        [blob] = await conn.read_resource("demo://resource/dynamic/blob/1")
        assert isinstance(blob.blob, bytes)
        # prompts and completion
        prompts = {p.name: p for p in await conn.list_prompts()}
        assert prompts["args-prompt"].required == ("city",)
        messages = await conn.get_prompt("args-prompt", {"city": "Lyon"})
        assert any("Lyon" in str(m.content) for m in messages)
        values = await conn.complete(prompt="completable-prompt", argument="department", value="")
        assert values
        # progress reaches the caller's on_progress
        seen: list[Progress] = []
        await me.request(
            "everything",
            "trigger-long-running-operation",
            {"duration": 1, "steps": 3},
            on_progress=seen.append,
            timeout=20,
        )
        assert [p.done for p in seen] == [1, 2, 3]
        # the server's sampling and elicitation requests reach our handlers
        text = await me.request("everything", "trigger-sampling-request", {"prompt": "tea"})
        assert "sampled: Resource trigger-sampling-request context: tea" in str(text)
        answer = await me.request("everything", "trigger-elicitation-request", {})
        assert asked
        assert "accept" in str(answer).lower() or "provided" in str(answer).lower()
        # its log messages reach on_log
        await me.request("everything", "toggle-simulated-logging", {})
        async with asyncio.timeout(15):
            await got_log.wait()
        assert logs[0][0] in (
            "debug",
            "info",
            "notice",
            "warning",
            "error",
            "critical",
            "alert",
            "emergency",
        )


def _sample_value(prop: dict[str, Any]) -> Any:
    """A valid answer for one elicitation field."""
    if "enum" in prop:
        return prop["enum"][0]
    if "oneOf" in prop:
        return prop["oneOf"][0]["const"]
    kind = prop.get("type")
    if kind == "boolean":
        return True
    if kind in ("integer", "number"):
        return prop.get("minimum", 1)
    if kind == "array":
        items = prop.get("items", {})
        choices = items.get("enum") or [c["const"] for c in items.get("anyOf", [])]
        return choices[:1]
    if prop.get("format") == "email":
        return "ada@example.com"
    if prop.get("format") == "date":
        return "2026-01-01"
    if prop.get("format") == "uri":
        return "https://example.com"
    return "Ada"
