"""Tracing of pub/sub retries and dead letters, blackboard writes, and MCP tool calls."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from agentcomm import Agent, Context, RetryPolicy, Runtime
from agentcomm.observability.tracing import TraceRecorder
from agentcomm.testing.extras import require_module

FAST = RetryPolicy(max_attempts=3, backoff=0.001, max_backoff=0.002, jitter=0.0)


def _by_name(recorder: TraceRecorder) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for s in recorder.spans():
        out.setdefault(s.name, []).append(s)
    return out


async def test_pubsub_retries_and_dead_letter_are_span_events() -> None:
    recorder = TraceRecorder()
    worker = Agent("worker")
    attempts: list[int] = []
    done = asyncio.Event()

    @worker.on("jobs.*", retry=FAST, group="pool")
    async def work(n: int) -> None:
        attempts.append(n)
        if len(attempts) == FAST.max_attempts:
            done.set()
        raise RuntimeError(f"attempt {len(attempts)} failed")

    async with Runtime(agents=[worker], tracing=recorder.provider) as rt:
        await rt.agent("boss").publish("jobs.a", {"n": 1})
        await asyncio.wait_for(done.wait(), 10)
        await rt.events.wait_dead_letter(timeout=10)  # stored right after the last attempt
        assert len(await rt.events.dead_letters()) == 1

    spans = _by_name(recorder)
    (publish,) = spans["publish jobs.a"]
    processes = sorted(spans["process jobs.a"], key=lambda s: s.start_time or 0)
    assert len(processes) == FAST.max_attempts
    assert len(recorder.trace_ids()) == 1
    assert all(s.parent.span_id == publish.context.span_id for s in processes)
    attrs = dict(processes[0].attributes or {})
    assert attrs["messaging.destination.name"] == "jobs.a"
    assert attrs["messaging.consumer.group.name"] == "pool"
    assert attrs["messaging.destination.subscription.name"]
    assert attrs["agentcomm.agent"] == "worker"
    assert [dict(s.attributes or {})["agentcomm.attempt"] for s in processes] == [1, 2, 3]
    assert all(not s.status.is_ok for s in processes)
    events = [[e.name for e in s.events] for s in processes]
    assert events[:-1] == [["retry"], ["retry"]]
    assert events[-1] == ["dead_letter"]
    retry = processes[0].events[0]
    assert retry.attributes is not None
    assert retry.attributes["agentcomm.retry.delay"] == pytest.approx(FAST.delay(1))
    dead = processes[-1].events[0]
    assert dead.attributes is not None
    assert dead.attributes["agentcomm.dead_letter.reason"] == "max_attempts"


async def test_every_blackboard_write_path_has_a_span_with_its_revision() -> None:
    recorder = TraceRecorder()
    async with Runtime(tracing=recorder.provider) as rt:
        board = rt.agent("scribe").board
        r1 = await board.create("doc.a", {"v": 1})
        r2 = await board.write("doc.a", {"v": 2})
        r3 = (await board.update("doc.a", lambda v: {"v": v["v"] + 1})).revision
        r4 = await board.delete("doc.a")
        r5 = await board.write("doc.b", 1)  # first write of a key: the read-then-put path
        entry = await board.read("doc.b")
    assert entry is not None
    assert entry.traceparent is not None
    assert entry.cause is None
    writes = [s for s in recorder.spans() if s.name.startswith("write ")]
    got = [
        (
            s.name,
            dict(s.attributes or {})["agentcomm.board.operation"],
            dict(s.attributes or {})["agentcomm.revision"],
        )
        for s in writes
    ]
    assert got == [
        ("write doc.a", "create", r1),
        ("write doc.a", "write", r2),
        ("write doc.a", "update", r3),
        ("write doc.a", "delete", r4),
        ("write doc.b", "write", r5),
    ]
    # The stored traceparent is the one of the span that wrote the revision.
    last = writes[-1]
    assert entry.traceparent.split("-")[2] == format(last.context.span_id, "016x")


async def test_failed_write_marks_its_span() -> None:
    recorder = TraceRecorder()
    async with Runtime(tracing=recorder.provider) as rt:
        await rt.board.write("k", 1)
        with pytest.raises(Exception, match="revision"):
            await rt.board.write("k", 2, expected_revision=999)
    failed = [s for s in recorder.spans() if not s.status.is_ok]
    assert [s.name for s in failed] == ["write k"]


async def test_tracing_off_records_causation_but_no_trace_context() -> None:
    writer = Agent("writer")

    @writer.handler
    async def note(text: str, ctx: Context) -> str:
        await ctx.board.write("notes.1", {"text": text})
        await ctx.publish("notes.written", {"text": text})
        return ctx.envelope.id

    async with Runtime(agents=[writer]) as rt:
        assert rt.tracing is None
        msg_id = await rt.agent("me").request("writer", "note", {"text": "hi"})
        entry = await rt.board.read("notes.1")
        (event,) = [e for e in rt.message_log.recent(20) if e.kind == "event"]
    assert entry is not None
    assert entry.cause == msg_id
    assert entry.traceparent is None
    cause = entry.as_cause()
    assert cause is not None
    assert cause.id == msg_id
    assert event.causation_id == msg_id
    assert event.traceparent is None


async def test_mcp_tool_call_continues_the_callers_trace_across_http() -> None:
    require_module("mcp")
    calc = Agent("calc")

    @calc.handler
    async def add(a: int, b: int) -> int:
        "Add two integers."
        return a + b

    server_rec, client_rec = TraceRecorder(), TraceRecorder()
    async with Runtime(agents=[calc], tracing=server_rec.provider) as server_rt:
        server = await server_rt.tools.expose("calc")
        async with server.serve_http() as url, Runtime(tracing=client_rec.provider) as rt:
            await rt.tools.connect("remote-calc", url=url)
            assert await rt.agent("me").request("remote-calc", "add", {"a": 2, "b": 3}) == 5
    client = {s.name: s for s in client_rec.spans()}
    server_spans = {s.name: s for s in server_rec.spans()}
    call_out = client["call add"]
    assert call_out.parent.span_id == client["process remote-calc"].context.span_id
    call_in = server_spans["call add"]
    assert call_in.context.trace_id == call_out.context.trace_id
    assert call_in.parent.span_id == call_out.context.span_id
    assert server_spans["process calc"].context.trace_id == call_out.context.trace_id
    assert dict(call_in.attributes or {})["agentcomm.agent"] == "calc"
