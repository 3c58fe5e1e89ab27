"""OpenTelemetry tracing: one trace follows a request through every agent it touches."""

from __future__ import annotations

import asyncio

import pytest

from agentcomm import Agent, Context, RemoteError, Runtime
from agentcomm.observability.tracing import TraceRecorder


def _agents(done: asyncio.Event) -> list[Agent]:
    front, middle, back, sink = Agent("front"), Agent("middle"), Agent("back"), Agent("sink")

    @back.handler
    async def lookup(key: str) -> str:
        if key == "bad":
            raise KeyError(key)
        return key.upper()

    @sink.handler
    async def note(text: str) -> None:
        done.set()

    @middle.handler
    async def enrich(key: str, ctx: Context) -> str:
        value = await ctx.request("back", "lookup", {"key": key}, returns=str)
        await ctx.send("sink", "note", {"text": value})
        return value + "!"

    @front.handler
    async def handle(key: str, ctx: Context) -> str:
        return await ctx.request("middle", "enrich", {"key": key}, returns=str)

    return [front, middle, back, sink]


async def test_one_trace_spans_every_hop_with_parent_links() -> None:
    recorder = TraceRecorder()
    done = asyncio.Event()
    async with Runtime(agents=_agents(done), tracing=recorder.provider) as rt:
        assert await rt.agent("me").request("front", "handle", {"key": "a"}) == "A!"
        await asyncio.wait_for(done.wait(), 5)
    (trace_id,) = recorder.trace_ids()
    spans = recorder.spans(trace_id)
    by_id = {s.context.span_id: s for s in spans}
    parent_of = {s.name: by_id[s.parent.span_id].name for s in spans if s.parent is not None}
    assert parent_of == {
        "process front": "request front",
        "request middle": "process front",
        "process middle": "request middle",
        "request back": "process middle",
        "process back": "request back",
        "send sink": "process middle",
        "process sink": "send sink",
    }
    process_back = next(s for s in spans if s.name == "process back")
    attrs = dict(process_back.attributes or {})
    assert attrs["messaging.system"] == "agentcomm"
    assert attrs["messaging.destination.name"] == "back"
    assert attrs["agentcomm.sender"] == "middle"
    assert attrs["agentcomm.handler"] == "lookup"
    tree = recorder.format_tree(trace_id)
    assert tree.splitlines()[0].startswith("request front")
    assert "      process back" in tree


async def test_failures_mark_the_spans() -> None:
    recorder = TraceRecorder()
    async with Runtime(agents=_agents(asyncio.Event()), tracing=recorder.provider) as rt:
        with pytest.raises(RemoteError):
            await rt.agent("me").request("back", "lookup", {"key": "bad"})
    failed = {s.name: s.status.description for s in recorder.spans() if not s.status.is_ok}
    assert "KeyError" in (failed["process back"] or "")
    assert "RemoteError" in (failed["request back"] or "")


def test_recorder_is_bounded() -> None:
    recorder = TraceRecorder(max_spans=5)
    tracer = recorder.provider.get_tracer("t")
    for _ in range(20):
        with tracer.start_as_current_span("x"):
            pass
    assert len(recorder.spans()) == 5
