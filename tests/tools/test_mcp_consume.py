"""Consuming an MCP server's whole surface with rt.tools.connect (our server, over HTTP),
bearer tokens feeding the policy, and `agentcomm mcp serve` of a Runtime target."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from agentcomm.testing.extras import require_module

mcp = require_module("mcp")

from agentcomm import (  # noqa: E402
    Agent,
    Context,
    Image,
    Message,
    PermissionDenied,
    Policy,
    Progress,
    Resource,
    Runtime,
    UnknownHandler,
    ValidationError,
)

ROOT = Path(__file__).resolve().parents[2]
PNG = b"\x89PNG-fake"


def make_agent() -> Agent:
    a = Agent("remote")

    @a.handler
    async def work(steps: int, ctx: Context) -> str:
        "Progress, logs, a question and a sample."
        for i in range(steps):
            await ctx.progress(i + 1, steps)
        await ctx.log("info", "working")
        name = await ctx.ask("name?", returns=str)
        poem = await ctx.sample([Message("user", f"poem for {name}")], max_tokens=5)
        return f"{name}: {poem}"

    @a.handler
    async def lookup(identifier: str) -> dict[str, str]:
        "Needs an identifier."
        return {"id": identifier}

    @a.handler
    async def picture() -> list[str | Image]:
        "Text and an image."
        return ["a picture", Image(PNG)]

    @a.prompt
    def greet(name: str) -> str:
        "Greets someone."
        return f"Say hello to {name}"

    @a.resource("files://{name}", complete={"name": ["a.txt", "b.txt"]})
    def file(name: str) -> bytes:
        "A binary file."
        return name.encode()

    return a


async def test_a_remote_servers_whole_surface_reaches_our_api() -> None:
    logs: list[tuple[str, Any]] = []
    asked: list[str] = []

    def on_elicit(message: str, schema: dict[str, Any]) -> dict[str, Any]:
        asked.append(message)
        return {"answer": "Ada"}

    async def on_sample(messages: list[Message], options: dict[str, Any]) -> str:
        assert options["max_tokens"] == 5
        return f"roses ({messages[0].content})"

    async with Runtime(agents=[make_agent()]) as srv_rt:
        server = await srv_rt.tools.expose("remote")
        async with server.serve_http() as url, Runtime() as rt:
            conn = await rt.tools.connect(
                "far",
                url=url,
                mode="legacy",
                on_elicit=on_elicit,
                on_sample=on_sample,
                on_log=lambda level, data, logger: logs.append((level, data)),
            )
            assert conn.server_name == "remote"
            assert conn.server_version
            seen: list[Progress] = []
            me = rt.agent("me")
            out = await me.request("far", "work", {"steps": 2}, on_progress=seen.append)
            assert out == "Ada: roses (poem for Ada)"
            assert [(p.done, p.total) for p in seen] == [(1, 2), (2, 2)]
            assert asked == ["name?"]
            assert ("info", "working") in logs
            direct: list[tuple[float, float | None]] = []
            await conn.call_tool(
                "work", {"steps": 1}, on_progress=lambda d, t, m: direct.append((d, t))
            )
            assert direct == [(1, 1)]
            # rich content comes back as our types
            assert await conn.call_tool("picture", {}) == ["a picture", Image(PNG)]
            # prompts, resources, completion
            [p] = await conn.list_prompts()
            assert (p.name, p.required) == ("greet", ("name",))
            [m] = await conn.get_prompt("greet", {"name": "Bo"})
            assert m == Message("user", "Say hello to Bo")
            [info] = await conn.list_resources()
            assert info.template
            assert info.uri == "files://{name}"
            assert await conn.read_resource("files://x.bin") == [
                Resource(uri="files://x.bin", blob=b"x.bin")
            ]
            assert await conn.complete(uri="files://{name}", argument="name", value="a") == [
                "a.txt"
            ]
            with pytest.raises(UnknownHandler):
                await conn.read_resource("nothing://x")
            with pytest.raises(ValidationError):
                await conn.get_prompt("greet", {})
            # one word, once: the local check's message
            with pytest.raises(ValidationError) as err:
                await conn.call_tool("lookup", {})
            assert "arguments: arguments" not in str(err.value)
            assert "far.lookup arguments: 'identifier' is a required property" in str(err.value)


async def test_questions_on_the_2026_protocol_are_answered_by_our_callbacks() -> None:
    """rt.tools.connect in the default mode: the rounds run; progress is not repeated."""
    async with Runtime(agents=[make_agent()]) as srv_rt:
        server = await srv_rt.tools.expose("remote")
        async with server.serve_http() as url, Runtime() as rt:
            conn = await rt.tools.connect(
                "far",
                url=url,
                on_elicit=lambda message, schema: {"answer": "Bo"},
                on_sample=lambda messages, options: "verse",
            )
            seen: list[Progress] = []
            out = await rt.agent("me").request("far", "work", {"steps": 2}, on_progress=seen.append)
            assert out == "Bo: verse"
            assert [p.done for p in seen] == [1, 2]  # the replayed rounds send it once
            assert conn.connected


async def test_bearer_tokens_feed_the_callers_identity_into_the_policy() -> None:
    policy = Policy(
        {
            "mcp-gateway": {"send": ["remote"]},
            "alice": {"call": ["remote.lookup", "remote.picture"]},
            "bob": {"call": ["remote.picture"]},
        }
    )
    async with Runtime(agents=[make_agent()], access=policy) as srv_rt:
        server = await srv_rt.tools.expose("remote")
        tokens = {"alice-token": "alice", "bob-token": "bob"}
        async with server.serve_http(tokens=tokens) as url, Runtime() as rt:
            alice = await rt.tools.connect(
                "as-alice", url=url, mode="legacy", headers={"Authorization": "Bearer alice-token"}
            )
            bob = await rt.tools.connect(
                "as-bob", url=url, mode="legacy", headers={"Authorization": "Bearer bob-token"}
            )
            assert alice.tool_names() == ["lookup", "picture"]
            assert bob.tool_names() == ["picture"]
            assert await alice.call_tool("lookup", {"identifier": "c1"}) == {"id": "c1"}
            with pytest.raises(UnknownHandler):  # not even listed for bob
                await bob.call_tool("lookup", {"identifier": "c1"})
            from agentcomm.core.errors import TransportError
            from agentcomm.transports.base import Transport  # noqa: F401  (import check)

            with pytest.raises(TransportError):  # no token: 401
                await rt.tools.connect("nobody", url=url, mode="legacy", connect_timeout=10)
        # the identity is checked at the call too, not only in the listing
        async with mcp.Client(server.server, mode="legacy") as client:  # in memory: the gateway
            r = await client.call_tool("lookup", {"identifier": "c1"})
            assert r.is_error
            assert "PermissionDenied" in r.content[0].text  # type: ignore[union-attr]
    assert PermissionDenied  # the error type the text names


RUNTIME_APP = """
from agentcomm import Agent, Policy, Runtime

POLICY = Policy({"mcp-gateway": {"send": ["calc"], "call": ["calc.add"]}})


def calc_agent():
    calc = Agent("calc")

    @calc.handler
    async def add(a: int, b: int) -> int:
        "Add."
        return a + b

    @calc.handler
    async def secret() -> str:
        "Not for the gateway."
        return "s"

    return calc


def make():
    return Runtime(agents=[calc_agent()], access=POLICY)


rt = make()
"""


@pytest.mark.parametrize("attr", ["rt", "make"])
async def test_mcp_serve_a_runtime_target_as_it_is(tmp_path: Path, attr: str) -> None:
    app = tmp_path / "rtapp.py"
    app.write_text(RUNTIME_APP)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    cmd = [sys.executable, "-m", "agentcomm", "mcp", "serve", f"{app}:{attr}"]
    async with Runtime() as rt:
        conn = await rt.tools.connect("calc-remote", command=cmd, env=env, timeout=20.0)
        assert conn.tool_names() == ["add"]  # the runtime's own policy hides `secret`
        assert await conn.call_tool("add", {"a": 2, "b": 3}) == 5
        await rt.tools.disconnect("calc-remote")
        await asyncio.sleep(0)
