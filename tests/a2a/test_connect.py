"""Consuming an A2A agent: the proxy agent, errors both ways, credentials, trace context.

The remote agent is an agentcomm exposure in a second runtime (its own transport,
as another process would be); the Python SDK's client speaks to it under the proxy.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from agentcomm.testing.extras import require_module

require_module("a2a")

from agentcomm import (  # noqa: E402
    Agent,
    Context,
    PermissionDenied,
    RemoteError,
    Runtime,
    UnknownTask,
    ValidationError,
)
from agentcomm.a2a import BearerAuth  # noqa: E402
from agentcomm.a2a.errors import UnsupportedOperation  # noqa: E402

remote = Agent("remote")
started = asyncio.Event()


@remote.handler
async def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


@remote.handler
async def fail(reason: str) -> str:
    """Always fails."""
    raise RuntimeError(reason)


@remote.handler
async def tick(n: int, ctx: Context) -> AsyncIterator[dict[str, int]]:
    """n chunks with progress."""
    for i in range(1, n + 1):
        await ctx.progress(i, n, "tick")
        yield {"i": i}


@remote.task_handler()
async def book(room: str, ctx: Context) -> str:
    """Book a room after asking for the night count."""
    await ctx.progress(1, 2, "checking")
    nights = await ctx.ask(f"how many nights in {room}?", returns=str, timeout=30)
    return f"{room} for {nights} nights"


@remote.task_handler()
async def slow(n: int, ctx: Context) -> int:
    """Takes a long time (to be cancelled)."""
    started.set()
    await ctx.progress(0, 1, "started")
    await asyncio.sleep(60)
    return n


async def test_the_proxy_calls_every_kind_of_skill() -> None:
    async with Runtime(agents=[remote]) as far, Runtime() as near:
        x = await far.a2a.expose("remote")
        conn = await near.a2a.connect("hotel", url=x.url)
        assert {s.id: s.kind for s in conn.skills} == {
            "add": "request",
            "fail": "request",
            "tick": "stream",
            "book": "task",
            "slow": "task",
        }
        listed = {t.handler: t for t in near.tools.catalogue() if t.agent == "hotel"}
        assert set(listed) == {"add", "fail"}  # one-answer skills are tools; from the card:
        assert listed["add"].input_schema["required"] == ["a", "b"]
        assert listed["add"].description == "Add two numbers."
        me = near.agent("me")
        assert await me.request("hotel", "add", {"a": 2, "b": 3}) == 5
        seen: list[Any] = []
        stream = await me.stream("hotel", "tick", {"n": 3}, on_progress=seen.append)
        assert [c async for c in stream] == [{"i": 1}, {"i": 2}, {"i": 3}]
        assert seen
        assert seen[-1].done == 3
        handle = await me.start_task("hotel", "book", {"room": "suite"})
        async for u in handle.updates():
            if u.state == "input-required":
                assert u.question is not None
                assert u.question.text == "how many nights in suite?"
                await handle.answer("2")
        assert await handle.result(timeout=20) == "suite for 2 nights"


async def test_cancel_of_the_local_task_cancels_the_remote_one() -> None:
    started.clear()
    async with Runtime(agents=[remote]) as far, Runtime() as near:
        x = await far.a2a.expose("remote")
        await near.a2a.connect("hotel", url=x.url)
        handle = await near.agent("me").start_task("hotel", "slow", {"n": 1})
        async for u in handle.updates():  # the remote task is under way (its progress is here)
            if u.kind == "progress":
                break
        status = await handle.cancel()
        assert status.state == "canceled"
        for _ in range(100):
            remote_states = [s.state for s in await far.tasks.list()]
            if remote_states == ["canceled"]:
                break
            await asyncio.sleep(0.05)
        assert remote_states == ["canceled"]


async def test_errors_map_both_ways_with_the_remote_text() -> None:
    async with Runtime(agents=[remote]) as far, Runtime() as near:
        x = await far.a2a.expose("remote")
        conn = await near.a2a.connect("hotel", url=x.url)
        me = near.agent("me")
        with pytest.raises(RemoteError, match="boom"):
            await me.request("hotel", "fail", {"reason": "boom"})
        with pytest.raises(ValidationError, match=r"add arguments"):
            await me.request("hotel", "add", {"a": "two", "b": 3})
        with pytest.raises(UnknownTask):
            await conn.get_task("0" * 32)
        with pytest.raises(UnknownTask):
            await conn.cancel_task("0" * 32)
        handle = await me.start_task("hotel", "book", {"room": "x"})
        async for u in handle.updates():
            if u.state == "input-required":
                break
        done = next(s for s in await far.tasks.list())
        await far.agent("ops").task(done.id).cancel()
        from a2a.utils.errors import A2AError

        from agentcomm.a2a.errors import from_a2a

        late = conn._message(conn.skills[0], {"text": "late"}, done.id)
        with pytest.raises(A2AError) as info:  # a message to a finished task
            await conn._client.send_message(late).__anext__()  # type: ignore[union-attr]
        assert isinstance(from_a2a(info.value, x.url), UnsupportedOperation)
        assert "canceled" in str(from_a2a(info.value, x.url))


async def test_credentials_are_sent_and_required() -> None:
    async with Runtime(agents=[remote]) as far, Runtime() as near:
        x = await far.a2a.expose("remote", auth=[BearerAuth({"t0ken-for-near": "near"})])
        await near.a2a.connect("hotel", url=x.url, token="t0ken-for-near")
        assert await near.agent("me").request("hotel", "add", {"a": 1, "b": 1}) == 2
        await near.a2a.connect("anon", url=x.url)
        with pytest.raises(PermissionDenied, match="401"):
            await near.agent("you").request("anon", "add", {"a": 1, "b": 1})


async def test_one_trace_spans_the_a2a_hop() -> None:
    require_module("opentelemetry.sdk")
    from agentcomm.observability.tracing import TraceRecorder

    recorder = TraceRecorder()
    async with (
        Runtime(agents=[remote], tracing=recorder.provider) as far,
        Runtime(tracing=recorder.provider) as near,
    ):
        x = await far.a2a.expose("remote")
        await near.a2a.connect("hotel", url=x.url)
        assert await near.agent("me").request("hotel", "add", {"a": 1, "b": 2}) == 3
    names_by_trace = {t: [s.name for s in recorder.spans(t)] for t in recorder.trace_ids()}
    joined = [names for names in names_by_trace.values() if "a2a remote" in names]
    assert joined, names_by_trace
    names = joined[0]
    assert "request hotel" in names  # the caller's span, in the same trace
    assert "process remote" in names  # the remote handler's run
