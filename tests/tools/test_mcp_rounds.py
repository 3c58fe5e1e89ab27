"""Roots, several questions in one round, and prompts that ask, in memory on both protocol
revisions (handshake-era requests to the client; 2026-07-28 input_required rounds)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from agentcomm.testing.extras import require_module

mcp = require_module("mcp")
import mcp_types as mt  # noqa: E402

from agentcomm import Agent, ClientUnsupported, Context, Root, Runtime  # noqa: E402


def make_agent() -> Agent:
    a = Agent("desk")

    @a.handler
    async def where(ctx: Context) -> str:
        "Lists the client's roots."
        try:
            roots = await ctx.roots(timeout=5)
        except ClientUnsupported:
            return "no roots"
        assert all(isinstance(r, Root) for r in roots)
        return "; ".join(f"{r.name}={r.uri}" for r in roots)

    @a.handler
    async def must_list(ctx: Context) -> int:
        "Needs roots (uncaught ClientUnsupported)."
        return len(await ctx.roots())

    @a.handler
    async def all_at_once(ctx: Context) -> str:
        "A name, an LLM line and the roots, asked together."
        ctx.logger.warning("asking three things")  # a record to send: flushing awaits
        name, line, roots = await asyncio.gather(
            ctx.ask("Name?", returns=str, key="name"),
            ctx.sample("A greeting", max_tokens=10, key="line"),
            ctx.roots(key="roots"),
        )
        return f"{line}, {name}: {[r.uri for r in roots]}"

    @a.prompt
    async def briefed(topic: str, ctx: Context) -> str:
        "Asks for the audience before writing the prompt."
        audience = await ctx.ask(f"Audience for {topic}?", returns=str, key="audience")
        return f"Explain {topic} to {audience}"

    return a


ROOTS = mt.ListRootsResult(
    roots=[mt.Root(uri="file:///work/a", name="a"), mt.Root(uri="file:///work/b", name="b")]
)


class Client:
    """Callbacks that count how often the client was asked."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def roots(self, context: Any) -> mt.ListRootsResult:
        self.asked.append("roots")
        return ROOTS

    async def elicit(self, context: Any, params: mt.ElicitRequestParams) -> mt.ElicitResult:
        self.asked.append(f"elicit:{params.message}")
        return mt.ElicitResult(action="accept", content={"answer": "Ada"})

    async def sample(
        self, context: Any, params: mt.CreateMessageRequestParams
    ) -> mt.CreateMessageResult:
        self.asked.append("sample")
        reply = mt.TextContent(type="text", text="Hello")
        return mt.CreateMessageResult(role="assistant", content=reply, model="m")

    def options(self) -> dict[str, Any]:
        return {
            "list_roots_callback": self.roots,
            "elicitation_callback": self.elicit,
            "sampling_callback": self.sample,
        }


def _text(result: mt.CallToolResult) -> str:
    block = result.content[0]
    assert isinstance(block, mt.TextContent)
    return block.text


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_ctx_roots_returns_the_clients_roots(mode: str) -> None:
    async with Runtime(agents=[make_agent()]) as rt:
        server = await rt.tools.expose("desk")
        client = Client()
        async with mcp.Client(
            server.server, mode=mode, list_roots_callback=client.roots
        ) as session:
            assert (session.protocol_version == "2026-07-28") == (mode == "auto")
            result = await session.call_tool("where", {})
            assert _text(result) == "a=file:///work/a; b=file:///work/b"
            assert client.asked == ["roots"]
        async with mcp.Client(server.server, mode=mode) as bare:  # no roots capability
            assert _text(await bare.call_tool("where", {})) == "no roots"
            with pytest.raises(mcp.MCPError) as err:
                await bare.call_tool("must_list", {})
            assert err.value.code == mt.MISSING_REQUIRED_CLIENT_CAPABILITY
            assert "roots" in err.value.message


async def test_ctx_roots_outside_mcp_says_why() -> None:
    async with Runtime(agents=[make_agent()]) as rt:
        me = rt.agent("me")
        assert await me.request("desk", "where", {}) == "no roots"
        with pytest.raises(Exception, match="called over MCP"):
            await me.request("desk", "must_list", {})


async def test_questions_awaited_together_go_out_in_one_round() -> None:
    async with Runtime(agents=[make_agent()]) as rt:
        server = await rt.tools.expose("desk")
        client = Client()
        async with mcp.Client(server.server, **client.options()) as session:
            assert session.protocol_version == "2026-07-28"
            raw = await session.session.call_tool(
                "all_at_once",
                {},
                allow_input_required=True,
                meta={mt.LOG_LEVEL_META_KEY: "debug"},  # the log record goes out
            )
            assert isinstance(raw, mt.InputRequiredResult)
            requests = raw.input_requests or {}
            assert sorted(requests) == ["line", "name", "roots"]
            methods = sorted(r.method for r in requests.values())
            assert methods == ["elicitation/create", "roots/list", "sampling/createMessage"]
            assert raw.request_state
            result = await session.call_tool("all_at_once", {})  # the SDK runs the rounds
            assert _text(result) == "Hello, Ada: ['file:///work/a', 'file:///work/b']"
            # one round: each question asked once, none asked again on the replay
            assert sorted(client.asked) == ["elicit:Name?", "roots", "sample"]


async def test_questions_awaited_together_on_the_handshake_protocol() -> None:
    async with Runtime(agents=[make_agent()]) as rt:
        server = await rt.tools.expose("desk")
        client = Client()
        async with mcp.Client(server.server, mode="legacy", **client.options()) as session:
            result = await session.call_tool("all_at_once", {})
            assert _text(result) == "Hello, Ada: ['file:///work/a', 'file:///work/b']"
            assert sorted(client.asked) == ["elicit:Name?", "roots", "sample"]


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_a_prompt_that_takes_ctx_asks_the_client(mode: str) -> None:
    async with Runtime(agents=[make_agent()]) as rt:
        server = await rt.tools.expose("desk")
        client = Client()
        async with mcp.Client(server.server, mode=mode, **client.options()) as session:
            assert (session.protocol_version == "2026-07-28") == (mode == "auto")
            listed = (await session.list_prompts()).prompts
            args = [a.name for p in listed if p.name == "briefed" for a in p.arguments or []]
            assert args == ["topic"]  # ctx is not an argument
            got = await session.get_prompt("briefed", {"topic": "queues"})
            first = got.messages[0].content
            assert isinstance(first, mt.TextContent)
            assert first.text == "Explain queues to Ada"
            assert client.asked == ["elicit:Audience for queues?"]
            if mode == "auto":
                raw = await session.session.get_prompt(
                    "briefed", {"topic": "queues"}, allow_input_required=True
                )
                assert isinstance(raw, mt.InputRequiredResult)
                assert list(raw.input_requests or {}) == ["audience"]
        async with mcp.Client(server.server, mode=mode) as bare:  # no elicitation
            with pytest.raises(mcp.MCPError) as err:
                await bare.get_prompt("briefed", {"topic": "queues"})
            assert err.value.code == mt.MISSING_REQUIRED_CLIENT_CAPABILITY
            with pytest.raises(mcp.MCPError) as err:  # its arguments are still checked
                await bare.get_prompt("briefed", {})
            assert err.value.code == mt.INVALID_PARAMS
