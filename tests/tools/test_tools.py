"""The tool catalogue, LLM tool definitions, target loading and the CLI commands."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from agentcomm import Agent, ConfigurationError, Runtime, UnknownHandler
from agentcomm.cli.main import main
from agentcomm.core.schema import ANY_JSON
from agentcomm.testing.extras import require_module
from agentcomm.tools.catalogue import (
    ToolInfo,
    anthropic_tool,
    llm_tool_name,
    load_agents,
    openai_tool,
    tool_schemas,
)

HERE = Path(__file__).resolve()


class Order(msgspec.Struct, frozen=True):
    id: str
    total_cents: int


def make_shop() -> Agent:
    shop = Agent("shop")

    @shop.handler
    async def place(item: str, quantity: int = 1) -> Order:
        """Place an order.

        Details that stay out of the tool description.
        """
        return Order(f"o-{item}", 100 * quantity)

    @shop.handler(mcp=False)
    async def audit() -> list[str]:
        "Internal audit trail."
        return []

    @shop.handler(mcp="order_count")
    async def count() -> int:
        return 0

    return shop


def test_tool_schemas_follow_the_handler_types() -> None:
    shop = make_shop()
    inp, out, wrapped = tool_schemas(shop.handlers["place"])
    assert inp["type"] == "object"
    assert inp["required"] == ["item"]
    assert inp["properties"]["quantity"] == {"type": "integer", "default": 1}
    assert "title" not in inp
    assert not wrapped
    assert out is not None
    assert out["required"] == ["id", "total_cents"]
    inp, out, wrapped = tool_schemas(shop.handlers["count"])
    assert inp == {"type": "object", "properties": {}}
    assert wrapped
    assert out == {
        "type": "object",
        "properties": {"result": {"type": "integer"}},
        "required": ["result"],
    }


def test_llm_names_are_safe_and_bounded() -> None:
    assert llm_tool_name("customer-data", "lookup") == "customer-data__lookup"
    assert llm_tool_name("a.b", "c d") == "a_b__c_d"
    long = llm_tool_name("x" * 100, "y" * 100)
    assert len(long) == 64
    assert long != llm_tool_name("x" * 100, "y" * 99)


async def test_catalogue_lists_every_handler_with_schemas() -> None:
    async with Runtime(agents=[make_shop()]) as rt:
        infos = rt.tools.catalogue()
        by_handler = {i.handler: i for i in infos}
        assert sorted(by_handler) == ["audit", "count", "place"]
        place_info = by_handler["place"]
        assert place_info == ToolInfo(
            name="place",
            agent="shop",
            handler="place",
            llm_name="shop__place",
            description="Place an order.",
            input_schema=place_info.input_schema,
            output_schema=place_info.output_schema,
        )
        assert by_handler["count"].name == "order_count"
        assert not by_handler["audit"].exposed
        with pytest.raises(AttributeError):
            place_info.name = "other"  # type: ignore[misc]
        assert rt.tools.find("shop__place") == place_info
        with pytest.raises(UnknownHandler, match="no tool named 'shop__nope'"):
            rt.tools.find("shop__nope")
        # an LLM's tool call maps straight onto a request
        info = rt.tools.find("shop__place")
        me = rt.agent("me")
        assert await me.request(info.agent, info.handler, {"item": "pen", "quantity": 2}) == {
            "id": "o-pen",
            "total_cents": 200,
        }


async def test_llm_tool_definitions() -> None:
    async with Runtime(agents=[make_shop()]) as rt:
        info = rt.tools.find("shop__place")
        assert openai_tool(info) == {
            "type": "function",
            "function": {
                "name": "shop__place",
                "description": "Place an order.",
                "parameters": info.input_schema,
            },
        }
        assert anthropic_tool(info) == {
            "name": "shop__place",
            "description": "Place an order.",
            "input_schema": info.input_schema,
        }
        assert len(rt.tools.openai_tools()) == 3
        assert rt.tools.anthropic_tools(agents=["nobody"]) == []
        undocumented = rt.tools.find("shop__count")
        assert anthropic_tool(undocumented)["description"] == "count of agent shop"


def test_load_agents_forms() -> None:
    assert load_agents(f"{HERE}:make_shop") != []
    assert [a.name for a in load_agents("tests.tools.test_tools:make_shop")] == ["shop"]
    with pytest.raises(ConfigurationError, match="expected module:attr"):
        load_agents("no_colon")
    with pytest.raises(ConfigurationError, match="has no attribute 'nope'"):
        load_agents("tests.tools.test_tools:nope")
    with pytest.raises(ConfigurationError, match="expected an Agent"):
        load_agents("tests.tools.test_tools:HERE")
    with pytest.raises(ConfigurationError, match="expected an Agent"):
        load_agents("tests.tools.test_tools:Order")
    with pytest.raises(ConfigurationError, match="no such file"):
        load_agents("missing/file.py:x")


def test_cli_tools_lists_the_catalogue(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tools", "tests.tools.test_tools:make_shop"]) == 0
    out = capsys.readouterr().out
    assert "shop.place(item, quantity)  [agent]  Place an order." in out
    assert main(["tools", "tests.tools.test_tools:make_shop", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {d["handler"] for d in data} == {"audit", "count", "place"}
    assert main(["tools", "tests.tools.test_tools:make_shop", "--llm", "openai"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data[0]["type"] == "function"
    assert main(["tools", "tests.tools.test_tools:make_shop", "--llm", "anthropic"]) == 0
    assert {d["name"] for d in json.loads(capsys.readouterr().out)} >= {"shop__place"}


def test_importing_agentcomm_does_not_import_mcp() -> None:
    code = "import sys, agentcomm, agentcomm.tools; print('mcp' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "False"


async def test_cli_mcp_serve_over_http() -> None:
    mcp = require_module("mcp")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "agentcomm",
        "mcp",
        "serve",
        f"{HERE}:make_shop",
        "--http",
        "127.0.0.1:0",
        stderr=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
    )
    try:
        assert proc.stderr is not None
        async with asyncio.timeout(30):
            line = (await proc.stderr.readline()).decode()
        assert "serving ['order_count', 'place'] at http://127.0.0.1:" in line
        url = line.rsplit(" at ", 1)[1].strip()
        async with mcp.Client(url) as client:
            r = await client.call_tool("place", {"item": "ink"})
            assert r.structured_content == {"id": "o-ink", "total_cents": 100}
    finally:
        proc.terminate()
        async with asyncio.timeout(30):
            await proc.wait()


async def test_a_handler_typed_object_is_any_json_and_never_hides_the_others() -> None:
    odd = Agent("odd")

    @odd.handler
    async def anything(value: object) -> object:
        "Echo any JSON value."
        return value

    @odd.handler
    async def plain(n: int) -> int:
        return n + 1

    async with Runtime(agents=[odd]) as rt:
        infos = {t.handler: t for t in rt.tools.catalogue()}
        assert set(infos) == {"anything", "plain"}
        assert infos["anything"].input_schema["properties"]["value"] == ANY_JSON
        assert infos["anything"].output_schema is not None
        assert infos["anything"].output_schema["properties"]["result"] == ANY_JSON
        caller = rt.agent("caller")
        got = await caller.request("odd", "anything", {"value": [1, {"a": None}]}, timeout=5)
        assert got == [1, {"a": None}]
        assert await caller.request("odd", "plain", {"n": 1}, timeout=5) == 2
        assert json.loads(json.dumps([openai_tool(t) for t in infos.values()]))
