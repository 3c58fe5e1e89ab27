"""The MCP surface beyond tools, in memory: content, prompts, resources, completion, logging,
progress, elicitation, sampling, the caller's policy, and bad input."""

from __future__ import annotations

import asyncio
import warnings
from typing import Any

import pytest

from agentcomm.testing.extras import require_module

mcp = require_module("mcp")
import mcp_types as mt  # noqa: E402

from agentcomm import (  # noqa: E402
    Agent,
    Audio,
    ClientUnsupported,
    ConfigurationError,
    Context,
    Image,
    InputDeclined,
    Message,
    Policy,
    Resource,
    Runtime,
)

PNG = b"\x89PNG\r\n\x1a\n-not-really"


def make_agent() -> Agent:
    a = Agent("studio")

    @a.handler
    async def picture() -> Image:
        "An image."
        return Image(PNG, "image/png")

    @a.handler
    async def mixed() -> list[str | Image | Audio | Resource]:
        "Mixed content."
        return [
            "caption",
            Image(PNG),
            Audio(b"RIFF", "audio/wav"),
            Resource(uri="x://r", blob=b"\x00\x01", mime_type="application/octet-stream"),
        ]

    @a.handler
    async def hello() -> str:
        "Plain text."
        return "hi"

    @a.handler
    async def slow(steps: int, ctx: Context) -> int:
        "Reports progress and logs."
        for i in range(steps):
            await ctx.progress(i + 1, steps, f"step {i + 1}")
        await ctx.log("debug", "debug detail")
        await ctx.log("warning", {"steps": steps})
        ctx.logger.error("standard %s", "record")
        return steps

    @a.handler
    async def ask_name(ctx: Context) -> str:
        "Elicits a name."
        try:
            name = await ctx.ask("Your name?", returns=str, timeout=5)
        except InputDeclined as exc:
            return f"declined ({exc.action})"
        except ClientUnsupported as exc:
            return f"unsupported: {exc}"
        return f"hello {name}"

    @a.handler
    async def haiku(topic: str, ctx: Context) -> str:
        "Samples the client's LLM."
        try:
            return str(await ctx.sample(f"haiku on {topic}", max_tokens=20, system="be brief"))
        except ClientUnsupported as exc:
            return f"unsupported: {exc}"

    @a.prompt(complete={"style": ["terse", "friendly", "formal"]})
    def summarise(text: str, style: str = "terse", words: int = 50) -> list[Message]:
        "Summarise a text."
        return [Message("user", f"{style}, {words} words: {text}"), Message("assistant", "OK")]

    @a.prompt
    def with_image() -> list[Message | str]:
        "An image prompt."
        return [Message("user", Image(PNG)), "describe it"]

    @a.resource("notes://today", mime_type="text/plain")
    def today() -> str:
        "Today's notes."
        return "buy milk"

    @a.resource("orders://{order_id}", complete={"order_id": lambda p: [f"{p}1", f"{p}2"]})
    async def order(order_id: int) -> dict[str, Any]:
        "An order by id."
        if order_id < 0:
            raise ValueError("order ids are positive")
        return {"id": order_id}

    return a


def _text(result: mt.CallToolResult) -> str:
    block = result.content[0]
    assert isinstance(block, mt.TextContent)
    return block.text


async def test_rich_content_results() -> None:
    async with Runtime(agents=[make_agent()]) as rt:
        server = await rt.tools.expose("studio")
        async with mcp.Client(server.server) as client:
            tools = {t.name: t for t in (await client.list_tools()).tools}
            assert tools["picture"].output_schema is None  # content, not structured
            r = await client.call_tool("picture", {})
            [img] = r.content
            assert isinstance(img, mt.ImageContent)
            assert img.mime_type == "image/png"
            r = await client.call_tool("mixed", {})
            kinds = [b.type for b in r.content]
            assert kinds == ["text", "image", "audio", "resource"]
            emb = r.content[3]
            assert isinstance(emb, mt.EmbeddedResource)
            assert isinstance(emb.resource, mt.BlobResourceContents)  # binary stays binary
            r = await client.call_tool("hello", {})
            assert _text(r) == "hi"
            assert r.structured_content == {"result": "hi"}


async def test_no_argument_tools_refuse_extra_arguments_like_typed_tools() -> None:
    async with Runtime(agents=[make_agent()]) as rt:
        server = await rt.tools.expose("studio")
        async with mcp.Client(server.server) as client:
            tools = {t.name: t for t in (await client.list_tools()).tools}
            assert tools["hello"].input_schema["additionalProperties"] is False
            assert tools["slow"].input_schema["additionalProperties"] is False
            r = await client.call_tool("hello", {"x": 1})
            assert r.is_error
            assert "unknown fields ['x']" in _text(r)
            r = await client.call_tool("slow", {"steps": 1, "x": 1})
            assert r.is_error
            assert "unknown field `x`" in _text(r)


async def test_progress_and_logs_reach_the_client_at_its_level() -> None:
    logs: list[tuple[str, Any]] = []
    progress: list[tuple[float, float | None, str | None]] = []

    async def on_log(params: mt.LoggingMessageNotificationParams) -> None:
        logs.append((params.level, params.data))

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append((done, total, message))

    async with Runtime(agents=[make_agent()]) as rt:
        server = await rt.tools.expose("studio")
        async with mcp.Client(server.server, mode="legacy", logging_callback=on_log) as client:
            with warnings.catch_warnings():  # logging is deprecated in 2026-07-28
                warnings.simplefilter("ignore")
                await client.set_logging_level("info")
            r = await client.call_tool("slow", {"steps": 3}, progress_callback=on_progress)
            assert r.structured_content == {"result": 3}
    assert progress == [(1, 3, "step 1"), (2, 3, "step 2"), (3, 3, "step 3")]
    # debug is below the level the client set; the standard logger's record arrives too
    assert logs == [("warning", {"steps": 3}), ("error", "standard record")]


async def test_elicitation_and_sampling_reach_the_client() -> None:
    asked: list[dict[str, Any]] = []

    async def elicit(ctx: Any, params: mt.ElicitRequestParams) -> mt.ElicitResult:
        asked.append(params.requested_schema)  # type: ignore[union-attr]
        return mt.ElicitResult(action="accept", content={"answer": "Ada"})

    async def sample(ctx: Any, params: mt.CreateMessageRequestParams) -> mt.CreateMessageResult:
        assert params.system_prompt == "be brief"
        assert params.max_tokens == 20
        first = params.messages[0].content
        assert isinstance(first, mt.TextContent)
        return mt.CreateMessageResult(
            role="assistant",
            content=mt.TextContent(type="text", text=f"echo: {first.text}"),
            model="test",
        )

    async with Runtime(agents=[make_agent()]) as rt:
        server = await rt.tools.expose("studio")
        async with mcp.Client(
            server.server, mode="legacy", elicitation_callback=elicit, sampling_callback=sample
        ) as client:
            assert _text(await client.call_tool("ask_name", {})) == "hello Ada"
            assert asked[0]["properties"]["answer"]["type"] == "string"
            assert _text(await client.call_tool("haiku", {"topic": "tea"})) == "echo: haiku on tea"

        async def decline(ctx: Any, params: Any) -> mt.ElicitResult:
            return mt.ElicitResult(action="decline")

        async with mcp.Client(server.server, mode="legacy", elicitation_callback=decline) as c:
            assert _text(await c.call_tool("ask_name", {})) == "declined (decline)"
        # a client without the capabilities: a typed error inside the handler
        async with mcp.Client(server.server, mode="legacy") as client:
            assert _text(await client.call_tool("ask_name", {})).startswith("unsupported: ")
            text = _text(await client.call_tool("haiku", {"topic": "tea"}))
            assert "sampling capability" in text


async def test_ask_and_sample_outside_mcp_say_why() -> None:
    agent = make_agent()
    async with Runtime(agents=[agent]) as rt:
        me = rt.agent("me")
        assert (await me.request("studio", "haiku", {"topic": "x"})).startswith("unsupported")
        with pytest.raises(Exception, match="called over MCP"):
            await me.request("studio", "ask_name", {})


async def test_prompts_and_completion() -> None:
    async with Runtime(agents=[make_agent()]) as rt:
        server = await rt.tools.expose("studio")
        async with mcp.Client(server.server) as client:
            prompts = {p.name: p for p in (await client.list_prompts()).prompts}
            args = {a.name: a.required for a in prompts["summarise"].arguments or ()}
            assert args == {"text": True, "style": False, "words": False}
            assert prompts["summarise"].description == "Summarise a text."
            got = await client.get_prompt("summarise", {"text": "abc", "words": "7"})
            roles = [m.role for m in got.messages]
            assert roles == ["user", "assistant"]
            first = got.messages[0].content
            assert isinstance(first, mt.TextContent)
            assert first.text == "terse, 7 words: abc"
            img = await client.get_prompt("with_image", {})
            assert [m.content.type for m in img.messages] == ["image", "text"]
            ref = mt.PromptReference(type="ref/prompt", name="summarise")
            done = await client.complete(ref, {"name": "style", "value": "f"})
            assert done.completion.values == ["friendly", "formal"]
            tref = mt.ResourceTemplateReference(type="ref/resource", uri="orders://{order_id}")
            done = await client.complete(tref, {"name": "order_id", "value": "4"})
            assert done.completion.values == ["41", "42"]


async def test_resources_from_declarations_and_the_blackboard() -> None:
    async with Runtime(agents=[make_agent()]) as rt:
        await rt.board.write("plan.goal", {"goal": "ship"})
        await rt.board.write("plan.note", "plain words")
        await rt.board.write("img.logo", PNG)
        await rt.board.write("secret.key", "hidden")
        server = await rt.tools.expose(
            "studio", board={"plan.": "application/json", "img.": "image/png"}
        )
        async with mcp.Client(server.server, mode="legacy") as client:
            listed = {str(r.uri) for r in (await client.list_resources()).resources}
            assert {"notes://today", "board://plan.goal", "board://img.logo"} <= listed
            assert "board://secret.key" not in listed
            templates = {
                t.uri_template for t in (await client.list_resource_templates()).resource_templates
            }
            assert templates == {"orders://{order_id}", "board://{key}"}
            [c] = (await client.read_resource("notes://today")).contents
            assert isinstance(c, mt.TextResourceContents)
            assert c.text == "buy milk"
            [c] = (await client.read_resource("orders://12")).contents
            assert isinstance(c, mt.TextResourceContents)
            assert c.text == '{"id":12}'
            [c] = (await client.read_resource("board://plan.goal")).contents
            assert isinstance(c, mt.TextResourceContents)
            assert c.text == '{"goal":"ship"}'
            [c] = (await client.read_resource("board://img.logo")).contents
            assert isinstance(c, mt.BlobResourceContents)
            assert c.mime_type == "image/png"
            import base64

            assert base64.b64decode(c.blob) == PNG  # binary stays binary


async def test_resource_subscription_is_a_blackboard_watch() -> None:
    updated: list[str] = []
    seen = asyncio.Event()

    async def on_message(msg: Any) -> None:
        if isinstance(msg, mt.ResourceUpdatedNotification):
            updated.append(str(msg.params.uri))
            seen.set()

    async with Runtime(agents=[make_agent()]) as rt:
        await rt.board.write("plan.goal", {"goal": "ship"})
        server = await rt.tools.expose("studio", board=["plan."])
        async with mcp.Client(server.server, mode="legacy", message_handler=on_message) as client:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                await client.subscribe_resource("board://plan.goal")
                await rt.board.write("plan.other", 1)  # another key: no notification
                await rt.board.write("plan.goal", {"goal": "ship it"})
                async with asyncio.timeout(5):
                    await seen.wait()
                assert updated == ["board://plan.goal"]
                await client.unsubscribe_resource("board://plan.goal")
                await client.subscribe_resource("notes://today")
                seen.clear()
                await server.resource_updated("notes://today")  # a declared resource
                async with asyncio.timeout(5):
                    await seen.wait()
                assert updated[-1] == "notes://today"


async def test_bad_input_gets_mcp_errors_and_the_server_keeps_serving() -> None:
    async with Runtime(agents=[make_agent()]) as rt:
        server = await rt.tools.expose("studio", board=["plan."])
        async with mcp.Client(server.server) as client:
            with pytest.raises(mcp.MCPError) as err:
                await client.read_resource("nothing://here")
            assert err.value.code == -32002  # resource not found
            with pytest.raises(mcp.MCPError) as err:
                await client.read_resource("board://plan.absent")
            assert err.value.code == -32002
            with pytest.raises(mcp.MCPError) as err:
                await client.read_resource("orders://-5")  # the function refuses it
            assert err.value.code == mt.INVALID_PARAMS
            assert "positive" in err.value.message
            with pytest.raises(mcp.MCPError) as err:
                await client.read_resource("orders://abc")  # not an int
            assert err.value.code == mt.INVALID_PARAMS
            with pytest.raises(mcp.MCPError) as err:
                await client.get_prompt("summarise", {})
            assert err.value.code == mt.INVALID_PARAMS
            assert "text" in err.value.message
            with pytest.raises(mcp.MCPError) as err:
                await client.get_prompt("nope", {})
            assert err.value.code == mt.INVALID_PARAMS
            # still serving
            [c] = (await client.read_resource("notes://today")).contents
            assert isinstance(c, mt.TextResourceContents)
            assert c.text == "buy milk"


async def test_tools_list_shows_only_what_the_caller_may_call() -> None:
    policy = Policy(
        {
            "mcp-gateway": {"send": ["studio"], "call": ["studio.hello", "studio.picture"]},
            "me": {"send": ["studio"]},
        }
    )
    async with Runtime(agents=[make_agent()], access=policy) as rt:
        server = await rt.tools.expose("studio")
        async with mcp.Client(server.server) as client:
            names = sorted(t.name for t in (await client.list_tools()).tools)
            assert names == ["hello", "picture"]
            r = await client.call_tool("mixed", {})
            assert r.is_error
            assert "PermissionDenied" in _text(r)


def test_declaration_mistakes_are_configuration_errors() -> None:
    a = Agent("x")
    with pytest.raises(ConfigurationError, match="must be the URI's variables"):

        @a.resource("r://{id}")
        def wrong(key: str) -> str:
            return key

    with pytest.raises(ConfigurationError, match="needs a scheme"):
        a.resource("no-scheme")
    with pytest.raises(ConfigurationError, match="no argument 'nope'"):

        @a.prompt(complete={"nope": []})
        def p(text: str) -> str:
            return text


async def test_questions_on_the_2026_protocol_are_input_required_rounds() -> None:
    """ctx.ask/ctx.sample without a back channel: input_required results, answered and
    replayed; a missing capability is -32021 for an uncaught ClientUnsupported."""
    agent = make_agent()

    @agent.handler
    async def two_questions(ctx: Context) -> str:
        "Two rounds of questions."
        first = await ctx.ask("First?", returns=str, key="first")
        second = await ctx.sample(f"after {first}", max_tokens=5)
        return f"{first} / {second}"

    @agent.handler
    async def must_sample(ctx: Context) -> str:
        "Needs sampling."
        return str(await ctx.sample("x", max_tokens=1))

    asked: list[str] = []

    async def elicit(context: Any, params: mt.ElicitRequestParams) -> mt.ElicitResult:
        asked.append(params.message)
        return mt.ElicitResult(action="accept", content={"answer": "one"})

    async def sample(context: Any, params: mt.CreateMessageRequestParams) -> mt.CreateMessageResult:
        first = params.messages[0].content
        assert isinstance(first, mt.TextContent)
        reply = mt.TextContent(type="text", text=f"two ({first.text})")
        return mt.CreateMessageResult(role="assistant", content=reply, model="m")

    async with Runtime(agents=[agent]) as rt:
        server = await rt.tools.expose("studio")
        async with mcp.Client(
            server.server, elicitation_callback=elicit, sampling_callback=sample
        ) as client:
            assert client.protocol_version in ("2026-07-28",)
            r = await client.call_tool("two_questions", {})
            assert _text(r) == "one / two (after one)"
            assert asked == ["First?"]  # the replayed round reuses the first answer
            raw = await client.session.call_tool("two_questions", {}, allow_input_required=True)
            assert isinstance(raw, mt.InputRequiredResult)
            assert list(raw.input_requests or {}) == ["first"]
            with pytest.raises(mcp.MCPError) as err:  # tampered state
                await client.session.call_tool(
                    "two_questions",
                    {},
                    allow_input_required=True,
                    request_state=(raw.request_state or "") + "x",
                )
            assert err.value.code == mt.INVALID_PARAMS
        async with mcp.Client(server.server) as bare:  # no sampling capability
            with pytest.raises(mcp.MCPError) as err:
                await bare.call_tool("must_sample", {})
            assert err.value.code == mt.MISSING_REQUIRED_CLIENT_CAPABILITY
