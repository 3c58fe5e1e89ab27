"""The fixtures of the official MCP conformance suite, served by an agentcomm agent.

``@modelcontextprotocol/conformance`` (server scenarios) names the tools, resources
and prompts a server under test must offer; this agent offers them with ordinary
agentcomm declarations: handlers (tools), ``@agent.resource`` and ``@agent.prompt``,
with ``ctx.log``, ``ctx.progress``, ``ctx.ask`` (elicitation), ``ctx.sample``
(sampling) and ``ctx.roots`` (roots) inside, in tools and in a prompt. ``app`` is a
Runtime, served as it is::

    agentcomm mcp serve examples/mcp_conformance.py:app --http 127.0.0.1:3001
    npx @modelcontextprotocol/conformance server --url http://127.0.0.1:3001/mcp

``tests/tools/test_mcp_conformance.py`` runs the suite against it.
"""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import msgspec

from agentcomm import Agent, Audio, ClientUnsupported, Context, Image, Message, Resource, Runtime

#: A 1x1 red PNG and a minimal WAV file, as the suite's own fixture server uses.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
)
WAV = base64.b64decode("UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA=")

fixtures = Agent("conformance")


# -- tools ------------------------------------------------------------------------------
@fixtures.handler
async def test_simple_text() -> str:
    """Tests simple text content response."""
    return "This is a simple text response for testing."


@fixtures.handler
async def test_image_content() -> Image:
    """Tests image content response."""
    return Image(PNG, "image/png")


@fixtures.handler
async def test_audio_content() -> Audio:
    """Tests audio content response."""
    return Audio(WAV, "audio/wav")


@fixtures.handler
async def test_embedded_resource() -> Resource:
    """Tests embedded resource content response."""
    return Resource(
        uri="test://embedded-resource",
        text="This is an embedded resource content.",
        mime_type="text/plain",
    )


@fixtures.handler
async def test_multiple_content_types() -> list[str | Image | Resource]:
    """Tests response with multiple content types (text, image, resource)."""
    data = json.dumps({"test": "data", "value": 123})
    return [
        "Multiple content types test:",
        Image(PNG, "image/png"),
        Resource(uri="test://mixed-content-resource", text=data, mime_type="application/json"),
    ]


@fixtures.handler
async def test_tool_with_logging(ctx: Context) -> str:
    """Tests tool that emits log messages during execution."""
    await ctx.log("info", "Tool execution started")
    await asyncio.sleep(0.05)
    ctx.logger.info("Tool processing data")  # the standard logger reaches the client too
    await asyncio.sleep(0.05)
    await ctx.log("info", "Tool execution completed")
    return "Tool with logging executed successfully"


@fixtures.handler
async def test_tool_with_progress(ctx: Context) -> str:
    """Tests tool that reports progress notifications."""
    for step in (0, 50, 100):
        await ctx.progress(step, 100, f"Completed step {step} of 100")
        if step < 100:
            await asyncio.sleep(0.05)
    return "progress reported"


@fixtures.handler
async def test_error_handling() -> str:
    """Tests error response handling."""
    raise RuntimeError("This tool intentionally returns an error for testing")


@fixtures.handler
async def test_sampling(prompt: str, ctx: Context) -> str:
    """Tests server-initiated sampling (LLM completion request)."""
    answer = await ctx.sample([Message("user", prompt)], max_tokens=100)
    return f"LLM response: {answer}"


@fixtures.handler
async def test_elicitation(message: str, ctx: Context) -> str:
    """Tests server-initiated elicitation (user input request)."""
    schema = {
        "type": "object",
        "properties": {"response": {"type": "string", "description": "User's response"}},
        "required": ["response"],
    }
    answer = await ctx.ask(message, returns=schema)
    return f"User response: action=accept, content={json.dumps(answer)}"


class Defaults(msgspec.Struct):
    """The SEP-1034 form: every primitive type with a default."""

    name: str = "John Doe"
    age: int = 30
    score: float = 95.5
    status: str = "active"
    verified: bool = True


@fixtures.handler
async def test_elicitation_sep1034_defaults(ctx: Context) -> str:
    """Tests elicitation with default values per SEP-1034."""
    schema = msgspec.json.schema(Defaults)["$defs"]["Defaults"]
    schema["properties"]["status"]["enum"] = ["active", "inactive", "pending"]
    schema.pop("title", None)
    answer = await ctx.ask("Please review and update the form fields with defaults", returns=schema)
    return f"Elicitation completed: action=accept, content={json.dumps(answer)}"


def _titled(values: list[str], titles: list[str]) -> list[dict[str, str]]:
    return [{"const": v, "title": t} for v, t in zip(values, titles, strict=True)]


@fixtures.handler
async def test_elicitation_sep1330_enums(ctx: Context) -> str:
    """Tests elicitation with enum schema improvements per SEP-1330."""
    options = ["option1", "option2", "option3"]
    values = ["value1", "value2", "value3"]
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {
            "untitledSingle": {"type": "string", "enum": options},
            "titledSingle": {
                "type": "string",
                "oneOf": _titled(values, ["First Option", "Second Option", "Third Option"]),
            },
            "legacyEnum": {
                "type": "string",
                "enum": ["opt1", "opt2", "opt3"],
                "enumNames": ["Option One", "Option Two", "Option Three"],
            },
            "untitledMulti": {
                "type": "array",
                "minItems": 1,
                "maxItems": 3,
                "items": {"type": "string", "enum": options},
            },
            "titledMulti": {
                "type": "array",
                "minItems": 1,
                "maxItems": 3,
                "items": {
                    "anyOf": _titled(values, ["First Choice", "Second Choice", "Third Choice"])
                },
            },
        },
        "required": [],
    }
    answer = await ctx.ask("Please select options from the enum fields", returns=schema)
    return f"Elicitation completed: action=accept, content={json.dumps(answer)}"


class address(msgspec.Struct, omit_defaults=True):  # the suite names the $def
    street: str | None = None
    city: str | None = None


@fixtures.handler
async def json_schema_2020_12_tool(name: str | None = None, address: address | None = None) -> str:
    """Tool with JSON Schema 2020-12 features for conformance testing (SEP-1613)."""
    given = {"name": name, "address": msgspec.to_builtins(address) if address else None}
    return f"JSON Schema 2020-12 tool called with: {json.dumps(given)}"


# -- the 2026-07-28 revision: questions as input_required rounds (SEP-2322) -------------
def _form(**fields: str) -> dict[str, Any]:
    props = {name: {"type": kind} for name, kind in fields.items()}
    return {"type": "object", "properties": props, "required": list(fields)}


@fixtures.handler
async def test_input_required_result_elicitation(ctx: Context) -> str:
    """Asks the user's name (an elicitation input request named user_name)."""
    answer = await ctx.ask("What is your name?", returns=_form(name="string"), key="user_name")
    return f"Hello, {answer['name']}!"


@fixtures.handler
async def test_input_required_result_sampling(ctx: Context) -> str:
    """Asks the client's LLM (a sampling input request)."""
    text = await ctx.sample("What is the capital of France?", max_tokens=100, key="capital")
    return f"Sampling result: {text}"


@fixtures.handler
async def test_input_required_result_request_state(ctx: Context) -> str:
    """One confirmation; the call's state comes back with the answer."""
    answer = await ctx.ask("Please confirm", returns=_form(ok="boolean"), key="confirm")
    return "state-ok: requestState validated" if answer.get("ok") else "not confirmed"


@fixtures.handler
async def test_input_required_result_multi_round(ctx: Context) -> str:
    """Two rounds: a name, then a colour."""
    name = await ctx.ask("Step 1: What is your name?", returns=_form(name="string"), key="step1")
    colour = await ctx.ask(
        "Step 2: What is your favorite color?", returns=_form(color="string"), key="step2"
    )
    return f"Multi-round complete for {name['name']} who likes {colour['color']}"


@fixtures.handler
async def test_input_required_result_tampered_state(ctx: Context) -> str:
    """A confirmation whose state must come back untouched."""
    await ctx.ask("Please confirm", returns=_form(ok="boolean"), key="confirm")
    return "integrity-ok: state verified"


@fixtures.handler
async def test_input_required_result_capabilities(ctx: Context) -> str:
    """Asks only through the capabilities the client declared."""
    got = []
    try:
        got.append(await ctx.ask("Elicitation input", returns=_form(value="string"), key="elicit"))
    except ClientUnsupported:
        pass
    try:
        got.append(await ctx.sample("Sample request", max_tokens=50, key="sample_input"))
    except ClientUnsupported:
        pass
    return f"capabilities-ok: received {len(got)}" if got else "No supported capabilities declared"


@fixtures.handler
async def test_input_required_result_list_roots(ctx: Context) -> str:
    """Asks for the client's roots (a roots/list input request named client_roots)."""
    roots = await ctx.roots(key="client_roots")
    return "Roots: " + ", ".join(f"{r.name or '-'} ({r.uri})" for r in roots)


@fixtures.handler
async def test_input_required_result_multiple_inputs(ctx: Context) -> str:
    """A name, a greeting and the roots, asked together: one round of three requests."""
    name, greeting, roots = await asyncio.gather(
        ctx.ask("What is your name?", returns=_form(name="string"), key="user_name"),
        ctx.sample("Generate a greeting", max_tokens=50, key="greeting"),
        ctx.roots(key="client_roots"),
    )
    return f"{greeting} {name['name']} ({len(roots)} roots)"


@fixtures.handler
async def test_missing_capability(ctx: Context) -> str:
    """Needs the client's sampling capability (-32021 without it)."""
    await ctx.sample("Say ok", max_tokens=5, key="needs_sampling")
    return "Success"


@fixtures.handler
async def test_streaming_elicitation(ctx: Context) -> str:
    """Progress, then a question: the stream carries no request of its own."""
    await ctx.progress(50, 100)
    await ctx.ask("Continue?", returns=_form(ok="boolean"), key="continue")
    return "Streaming complete"


@fixtures.handler
async def test_logging_tool(ctx: Context) -> str:
    """Logs only when the request asked for logs (io.modelcontextprotocol/logLevel)."""
    await ctx.log("info", "Diagnostic trace logging activated")
    return "Logging evaluated"


# -- resources --------------------------------------------------------------------------
@fixtures.resource("test://static-text", name="static-text", mime_type="text/plain")
def static_text() -> str:
    """A static text resource for testing."""
    return "This is the content of the static text resource."


@fixtures.resource("test://static-binary", name="static-binary", mime_type="image/png")
def static_binary() -> bytes:
    """A static binary resource (image) for testing."""
    return PNG


@fixtures.resource("test://template/{id}/data", name="template", mime_type="application/json")
def template(id: str) -> dict[str, Any]:
    """A resource template with parameter substitution."""
    return {"id": id, "templateTest": True, "data": f"Data for ID: {id}"}


@fixtures.resource("test://watched-resource", name="watched-resource", mime_type="text/plain")
def watched() -> str:
    """A resource clients may subscribe to."""
    return "Watched resource content"


# -- prompts ----------------------------------------------------------------------------
@fixtures.prompt(title="Prompt That Asks")
async def test_input_required_result_prompt(ctx: Context) -> str:
    """A prompt that asks the user for its context first (elicitation)."""
    answer = await ctx.ask(
        "What context should the prompt use?", returns=_form(context="string"), key="user_context"
    )
    return f"Write with this context in mind: {answer['context']}"


@fixtures.prompt(title="Simple Test Prompt")
def test_simple_prompt() -> str:
    """A simple prompt without arguments."""
    return "This is a simple prompt for testing."


@fixtures.prompt(title="Prompt With Arguments", complete={"arg1": ["alpha", "beta"]})
def test_prompt_with_arguments(arg1: str, arg2: str) -> str:
    """A prompt with required arguments."""
    return f"Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"


@fixtures.prompt(title="Prompt With Embedded Resource")
def test_prompt_with_embedded_resource(resourceUri: str) -> list[Message]:
    """A prompt that includes an embedded resource."""
    text = "Embedded resource content for testing."
    return [
        Message("user", Resource(uri=resourceUri, text=text, mime_type="text/plain")),
        Message("user", "Please process the embedded resource above."),
    ]


@fixtures.prompt(title="Prompt With Image")
def test_prompt_with_image() -> list[Message | str]:
    """A prompt that includes image content."""
    return [Message("user", Image(PNG, "image/png")), "Please analyze the image above."]


app = Runtime(agents=[fixtures])
