"""Exposing agents as MCP tools: in-memory client, stdio subprocess, streamable HTTP."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest

from agentcomm.testing.extras import require_module

mcp = require_module("mcp")
import mcp_types as mt  # noqa: E402

from agentcomm import Agent, ConfigurationError, Context, PermissionDenied, Runtime  # noqa: E402

HERE = Path(__file__).resolve()


class Customer(msgspec.Struct, frozen=True):
    id: str
    email: str
    plan: str = "solo"


DB = {"c1": Customer("c1", "ada@example.com", "team")}


def make_agents() -> tuple[Agent, Agent]:
    crm = Agent("crm")

    @crm.handler
    async def lookup(identifier: str, fields: list[str] | None = None) -> dict[str, str]:
        """Look up a customer by id.

        Long description that is not part of the tool description.
        """
        c = msgspec.structs.asdict(DB[identifier])
        return {f: c[f] for f in fields} if fields else c

    @crm.handler
    async def add(a: int, b: int) -> int:
        "Add two integers."
        return a + b

    @crm.handler(mcp=False)
    async def internal() -> str:
        "Not for MCP."
        return "secret"

    @crm.handler(mcp="customer_by_model")
    async def get(c: Customer) -> Customer:
        "Echo a customer record."
        return c

    @crm.handler
    async def slow(seconds: float, ctx: Context) -> float | None:
        "Sleep, then report the deadline left."
        await asyncio.sleep(seconds)
        return ctx.remaining()

    other = Agent("other")

    @other.handler
    async def ping() -> str:
        "Answer pong."
        return "pong"

    return crm, other


# This module doubles as the target of `agentcomm mcp serve tests/tools/test_mcp_server.py:crm`.
crm, _other = make_agents()


def _text(result: mt.CallToolResult) -> str:
    return "".join(b.text for b in result.content if isinstance(b, mt.TextContent))


async def test_in_memory_client_lists_tools_with_schemas() -> None:
    crm, _ = make_agents()
    async with Runtime(agents=[crm]) as rt:
        server = await rt.tools.expose("crm")
        async with mcp.Client(server.server) as client:
            tools = {t.name: t for t in (await client.list_tools()).tools}
    assert sorted(tools) == ["add", "customer_by_model", "lookup", "slow"]  # internal opted out
    lookup = tools["lookup"]
    assert lookup.description == "Look up a customer by id."
    assert lookup.input_schema["required"] == ["identifier"]
    assert set(lookup.input_schema["properties"]) == {"identifier", "fields"}
    assert lookup.output_schema == {"type": "object", "additionalProperties": {"type": "string"}}
    assert tools["add"].output_schema == {
        "type": "object",
        "properties": {"result": {"type": "integer"}},
        "required": ["result"],
    }
    assert tools["customer_by_model"].input_schema["required"] == ["id", "email"]


async def test_in_memory_calls_run_the_handler_path() -> None:
    crm, _ = make_agents()
    async with Runtime(agents=[crm]) as rt:
        server = await rt.tools.expose("crm")
        async with mcp.Client(server.server) as client:
            r = await client.call_tool("lookup", {"identifier": "c1", "fields": ["email"]})
            assert not r.is_error
            assert r.structured_content == {"email": "ada@example.com"}
            assert msgspec.json.decode(_text(r)) == {"email": "ada@example.com"}
            r = await client.call_tool("add", {"a": 2, "b": 40})
            assert r.structured_content == {"result": 42}
            r = await client.call_tool("customer_by_model", {"id": "c9", "email": "x@y"})
            assert r.structured_content == {"id": "c9", "email": "x@y", "plan": "solo"}
        # the calls were real requests handled by the agent's own workers
        assert crm.statistics().handled == 3
        assert rt.agents["mcp-gateway"].statistics().requested == 3


async def test_handler_errors_reach_the_client_with_their_message() -> None:
    crm, _ = make_agents()
    async with Runtime(agents=[crm]) as rt:
        server = await rt.tools.expose("crm")
        async with mcp.Client(server.server) as client:
            r = await client.call_tool("lookup", {"identifier": "nobody"})
            assert r.is_error
            assert _text(r) == "crm raised KeyError: 'nobody'"
            r = await client.call_tool("add", {"a": "two", "b": 1})
            assert r.is_error
            assert _text(r).startswith("ValidationError: crm refused the payload")
            assert "$.a" in _text(r)
            with pytest.raises(mcp.MCPError, match="unknown tool 'internal'"):
                await client.call_tool("internal", {})
        assert crm.statistics().failed == 1  # the bad arguments never reached the handler


async def test_deadline_bounds_a_tool_call() -> None:
    crm, _ = make_agents()
    async with Runtime(agents=[crm]) as rt:
        server = await rt.tools.expose("crm", timeout=0.2)
        async with mcp.Client(server.server) as client:
            r = await client.call_tool("slow", {"seconds": 0.0})
            left = r.structured_content["result"] if r.structured_content else None
            assert left is not None
            assert 0 < left <= 0.2
            r = await client.call_tool("slow", {"seconds": 5.0})
            assert r.is_error
            assert "0.2s" in _text(r) or "deadline" in _text(r)


async def test_access_rules_apply_to_tool_calls() -> None:
    seen: list[tuple[str, str, str]] = []

    def access(agent: str, action: str, target: str) -> None:
        seen.append((agent, action, target))
        if target == "crm.add":
            raise PermissionDenied(f"{agent} may not {action} {target}")

    crm, _ = make_agents()
    async with Runtime(agents=[crm], access=access) as rt:
        server = await rt.tools.expose("crm")
        async with mcp.Client(server.server) as client:
            r = await client.call_tool("add", {"a": 1, "b": 2})
            assert r.is_error
            assert "may not call crm.add" in _text(r)
            r = await client.call_tool("lookup", {"identifier": "c1"})
            assert not r.is_error
    assert ("mcp-gateway", "call", "crm.lookup") in seen
    assert ("mcp-gateway", "send", "crm.lookup") in seen


async def test_expose_several_agents_and_name_collisions() -> None:
    crm, other = make_agents()
    async with Runtime(agents=[crm, other]) as rt:
        server = await rt.tools.expose()  # every agent with handlers
        assert server.tool_names() == ["add", "customer_by_model", "lookup", "ping", "slow"]
        async with mcp.Client(server.server) as client:
            assert (
                _text(await client.call_tool("ping", {})) == "pong"
            )  # text is text, no JSON quotes

        @other.handler(name="add2", mcp="add")
        async def add2(a: int) -> int:
            return a

        # a collision that appears at run time keeps the first tool and is logged
        assert server.tool_names() == ["add", "customer_by_model", "lookup", "ping", "slow"]
        async with mcp.Client(server.server) as client:
            r = await client.call_tool("add", {"a": 1, "b": 2})
            assert r.structured_content == {"result": 3}
        with pytest.raises(ConfigurationError, match="rename one"):
            await rt.tools.expose("crm", "other")
        with pytest.raises(ConfigurationError, match="no agent named 'ghost'"):
            await rt.tools.expose("ghost")


async def test_tool_list_changes_are_announced() -> None:
    crm, _ = make_agents()
    async with Runtime(agents=[crm]) as rt:
        server = await rt.tools.expose("crm")
        async with mcp.Client(server.server) as client:
            async with client.listen(tools_list_changed=True) as sub:

                @crm.handler
                async def refund(order: str) -> str:
                    "Refund an order."
                    return f"refunded {order}"

                async with asyncio.timeout(5):
                    event = await anext(aiter(sub))
            assert type(event).__name__ == "ToolsListChanged"
            names = [t.name for t in (await client.list_tools(cache_mode="refresh")).tools]
            assert "refund" in names
            r = await client.call_tool("refund", {"order": "o-1"})
            assert r.structured_content == {"result": "refunded o-1"}


async def test_tool_list_changes_reach_legacy_clients() -> None:
    crm, _ = make_agents()
    changed = asyncio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(message, mt.ToolListChangedNotification):
            changed.set()

    async with Runtime(agents=[crm]) as rt:
        server = await rt.tools.expose("crm")
        async with mcp.Client(server.server, mode="legacy", message_handler=on_message) as client:
            caps = client.server_capabilities
            assert caps.tools is not None
            assert caps.tools.list_changed
            await client.list_tools()
            crm.remove_handler("slow")
            async with asyncio.timeout(5):
                await changed.wait()
            names = [t.name for t in (await client.list_tools(cache_mode="refresh")).tools]
            assert "slow" not in names


async def test_streamable_http_on_loopback() -> None:
    crm, _ = make_agents()
    async with Runtime(agents=[crm]) as rt:
        server = await rt.tools.expose("crm")
        async with server.serve_http() as url:
            assert url.startswith("http://127.0.0.1:")
            assert url.endswith("/mcp")
            async with mcp.Client(url) as client:
                names = [t.name for t in (await client.list_tools()).tools]
                assert "lookup" in names
                r = await client.call_tool("add", {"a": 20, "b": 22})
                assert r.structured_content == {"result": 42}
                r = await client.call_tool("lookup", {"identifier": "zz"})
                assert r.is_error
                assert "KeyError" in _text(r)


async def test_stdio_subprocess_via_cli() -> None:
    params = mcp.StdioServerParameters(
        command=sys.executable,
        args=["-m", "agentcomm", "mcp", "serve", f"{HERE}:crm"],
        env={"PYTHONPATH": os.pathsep.join(sys.path)},
    )
    async with asyncio.timeout(30):
        async with mcp.Client(params) as client:
            names = sorted(t.name for t in (await client.list_tools()).tools)
            assert names == ["add", "customer_by_model", "lookup", "slow"]
            r = await client.call_tool("lookup", {"identifier": "c1", "fields": ["plan"]})
            assert r.structured_content == {"plan": "team"}
            r = await client.call_tool("lookup", {"identifier": "zz"})
            assert r.is_error
            assert _text(r) == "crm raised KeyError: 'zz'"


async def test_closed_exposure_stops_following_changes() -> None:
    crm, _ = make_agents()
    async with Runtime(agents=[crm]) as rt:
        server = await rt.tools.expose("crm")
        server.close()
        server.close()  # idempotent

        @crm.handler
        async def later() -> str:
            return "x"

        assert "later" not in server.tool_names()


async def test_expose_needs_a_running_runtime() -> None:
    crm, _ = make_agents()
    rt = Runtime(agents=[crm])
    with pytest.raises(Exception, match="not running"):
        await rt.tools.expose("crm")
