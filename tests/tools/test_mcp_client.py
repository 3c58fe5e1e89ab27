"""Consuming MCP servers: proxy agents, errors, timeouts, and the article's example."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import sys
from pathlib import Path

import pytest

from agentcomm.testing.extras import require_module

mcp = require_module("mcp")

from agentcomm import (  # noqa: E402
    Agent,
    ConfigurationError,
    Context,
    NoResponders,
    RemoteError,
    RequestTimeout,
    Runtime,
    TransportError,
    UnknownHandler,
    ValidationError,
)
from agentcomm.tools.catalogue import ToolError  # noqa: E402

HERE = Path(__file__).resolve()
ROOT = HERE.parents[2]

# The target of `agentcomm mcp serve tests/tools/test_mcp_client.py:fragile` (a subprocess).
fragile = Agent("fragile")


@fragile.handler
async def echo(text: str) -> str:
    "Echo the text."
    return text


@fragile.handler
async def die() -> str:
    "End the server process at once (to test a server that goes away)."
    os._exit(3)


def make_calc() -> Agent:
    calc = Agent("calc")

    @calc.handler
    async def add(a: int, b: int) -> int:
        "Add two integers."
        return a + b

    @calc.handler
    async def divide(a: float, b: float) -> float:
        "Divide a by b."
        return a / b

    @calc.handler
    async def nap(seconds: float) -> str:
        "Sleep a while."
        await asyncio.sleep(seconds)
        return "rested"

    return calc


def serve_cmd(target: str) -> list[str]:
    return [sys.executable, "-m", "agentcomm", "mcp", "serve", target]


async def test_imported_tools_are_called_like_any_agent() -> None:
    async with Runtime(agents=[make_calc()]) as server_rt:
        server = await server_rt.tools.expose("calc")
        async with server.serve_http() as url, Runtime() as rt:
            conn = await rt.tools.connect("remote-calc", url=url)
            assert conn.tool_names() == ["add", "divide", "nap"]
            me = rt.agent("me")
            assert await me.request("remote-calc", "add", {"a": 2, "b": 40}) == 42
            assert await conn.call_tool("divide", {"a": 1, "b": 4}) == 0.25
            infos = {i.handler: i for i in rt.tools.catalogue() if i.agent == "remote-calc"}
            assert infos["add"].source == "mcp"
            assert infos["add"].server == "remote-calc"
            assert infos["add"].input_schema["required"] == ["a", "b"]
            assert infos["add"].description == "Add two integers."


async def test_client_errors_are_agentcomm_errors() -> None:
    async with Runtime(agents=[make_calc()]) as server_rt:
        server = await server_rt.tools.expose("calc")
        async with server.serve_http() as url, Runtime() as rt:
            conn = await rt.tools.connect("remote-calc", url=url, timeout=5.0)
            me = rt.agent("me")
            with pytest.raises(UnknownHandler, match="no handler 'mul'"):
                await me.request("remote-calc", "mul", {"a": 1, "b": 2})
            with pytest.raises(UnknownHandler, match="has no tool 'mul'"):
                await conn.call_tool("mul", {})
            with pytest.raises(ValidationError, match="'x' is not of type 'integer'"):
                await me.request("remote-calc", "add", {"a": "x", "b": 1})
            with pytest.raises(ValidationError, match="'b' is a required property"):
                await me.request("remote-calc", "add", {"a": 1})
            with pytest.raises(ValidationError, match="'b' is a required property"):
                await conn.call_tool("add", {"a": 1})
            with pytest.raises(ToolError, match="calc raised ZeroDivisionError") as info:
                await conn.call_tool("divide", {"a": 1, "b": 0})
            assert info.value.source == "remote-calc"
            with pytest.raises(RemoteError, match="ZeroDivisionError"):
                await me.request("remote-calc", "divide", {"a": 1, "b": 0})
            # the caller's deadline bounds the MCP call
            with pytest.raises(RequestTimeout):
                await me.request("remote-calc", "nap", {"seconds": 1.5}, timeout=0.3)
            with pytest.raises(RequestTimeout):
                await conn.call_tool("nap", {"seconds": 1.5}, timeout=0.3)


async def test_connect_failures_are_transport_errors() -> None:
    async with Runtime() as rt:
        with pytest.raises(TransportError, match="cannot connect to MCP server 'nothing'"):
            await rt.tools.connect("nothing", command=[sys.executable, "-c", "pass"])
        assert "nothing" not in rt.agents
        with pytest.raises(ConfigurationError, match="exactly one of"):
            await rt.tools.connect("x")
        with pytest.raises(ConfigurationError, match="non-empty list"):
            await rt.tools.connect("x", command="python server.py")  # type: ignore[arg-type]


async def test_connect_timeout_bounds_a_server_that_never_answers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import gc

    mute = [sys.executable, "-c", "import sys; sys.stdin.read()"]  # never answers initialize
    async with Runtime() as rt:
        async with asyncio.timeout(10):  # far below timeout=30: connect_timeout is honoured
            with pytest.raises(TransportError, match=r"did not answer within 0\.3s"):
                await rt.tools.connect("mute", command=mute, connect_timeout=0.3, timeout=30.0)
        assert "mute" not in rt.agents
    gc.collect()
    assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]


async def test_stdio_server_that_goes_away() -> None:
    async with Runtime() as rt:
        conn = await rt.tools.connect(
            "fragile", command=serve_cmd(f"{HERE}:fragile"), cwd=str(ROOT), timeout=10.0
        )
        me = rt.agent("me")
        assert await me.request("fragile", "echo", {"text": "hi"}) == "hi"
        # the proxy's engine failed: the caller sees a TransportError, not a RemoteError
        with pytest.raises((TransportError, RequestTimeout)):
            await me.request("fragile", "die", {}, timeout=10.0)
        async with asyncio.timeout(10):
            await conn.wait_closed()
        assert not conn.connected
        with pytest.raises(TransportError, match="not connected"):
            await conn.call_tool("echo", {"text": "again"})
        with pytest.raises(NoResponders):
            await me.request("fragile", "echo", {"text": "again"})


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_remote_tool_list_changes_update_the_proxy(mode: str) -> None:
    calc = make_calc()
    async with Runtime(agents=[calc]) as server_rt:
        server = await server_rt.tools.expose("calc")
        async with server.serve_http() as url, Runtime() as rt:
            conn = await rt.tools.connect("remote-calc", url=url, mode=mode)
            changed = asyncio.Event()
            assert conn.agent is not None
            conn.agent.on_change(lambda a: changed.set())

            @calc.handler
            async def neg(a: int) -> int:
                "Negate."
                return -a

            async with asyncio.timeout(10):
                await changed.wait()
            assert "neg" in conn.tool_names()
            assert await rt.agent("me").request("remote-calc", "neg", {"a": 5}) == -5


async def test_disconnect_removes_the_proxy_agent() -> None:
    async with Runtime(agents=[make_calc()]) as server_rt:
        server = await server_rt.tools.expose("calc")
        async with server.serve_http() as url, Runtime() as rt:
            await rt.tools.connect("remote-calc", url=url)
            assert "remote-calc" in rt.agents
            await rt.tools.disconnect("remote-calc")
            assert "remote-calc" not in rt.agents
            assert all(i.agent != "remote-calc" for i in rt.tools.catalogue())
            with pytest.raises(ConfigurationError, match="no MCP connection"):
                rt.tools.connection("remote-calc")


# -- the article's example, ported ------------------------------------------------------


def _load_example():  # type: ignore[no-untyped-def]
    path = ROOT / "examples" / "mcp_customer_data.py"
    spec = importlib.util.spec_from_file_location("mcp_customer_data_example", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


EXPECTED = [
    "customer-data tools over MCP: ['lookup_customer']",
    "c-100: 12 x team = $228.00",
    "c-200: 1 x solo = $9.00",
]


@pytest.mark.parametrize("http", [False, True], ids=["stdio", "http"])
async def test_article_example(http: bool) -> None:
    example = _load_example()
    lines = await example.main(http=http)
    assert lines[:3] == EXPECTED
    assert lines[3].startswith("unknown customer -> RemoteError")
    assert "no customer with id or email 'nobody@example.com'" in lines[3]


async def test_article_example_billing_agent_sees_customer_data_schema() -> None:
    example = _load_example()
    async with Runtime(agents=[example.customer_data]) as server_rt:
        server = await server_rt.tools.expose("customer-data")
        async with server.serve_http() as url, Runtime(agents=[example.billing]) as rt:
            await rt.tools.connect("customer-data", url=url)
            (info,) = [i for i in rt.tools.catalogue() if i.agent == "customer-data"]
            assert info.name == "lookup_customer"
            assert info.description == "Look up customer details by email or ID."
            assert info.input_schema["properties"]["identifier"] == {"type": "string"}
            assert info.input_schema["required"] == ["identifier"]
            (defn,) = [d for d in rt.tools.anthropic_tools() if d["name"].startswith("customer")]
            assert defn["name"] == "customer-data__lookup_customer"


def test_example_runs_as_a_program() -> None:
    import subprocess

    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "mcp_customer_data.py")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=True,
    ).stdout.splitlines()
    assert out[:3] == EXPECTED


# Context is imported for handlers typed with it elsewhere in this suite.
_ = Context
