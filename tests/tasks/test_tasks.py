"""Durable tasks: the state machine, declarations and the context outside a task (in memory)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from agentcomm import (
    Agent,
    ConfigurationError,
    Context,
    InvalidTransition,
    RemoteError,
    Runtime,
    TaskFinished,
    TaskRetention,
    UnknownHandler,
)
from agentcomm.tasks.model import TERMINAL, check_transition


@pytest.mark.parametrize(
    ("state", "new"),
    [
        ("submitted", "working"),
        ("submitted", "canceled"),
        ("working", "working"),
        ("working", "input-required"),
        ("working", "completed"),
        ("input-required", "working"),
        ("input-required", "canceled"),
    ],
)
def test_allowed_transitions(state: str, new: str) -> None:
    check_transition("t", state, new)


@pytest.mark.parametrize(
    ("state", "new"),
    [("submitted", "completed"), ("submitted", "input-required"), ("input-required", "completed")],
)
def test_illegal_transitions_are_typed(state: str, new: str) -> None:
    with pytest.raises(InvalidTransition, match=f"cannot go from {state} to {new}") as info:
        check_transition("t", state, new)
    assert info.value.state == state
    assert info.value.task_id == "t"


@pytest.mark.parametrize("state", sorted(TERMINAL))
def test_terminal_states_are_left_never(state: str) -> None:
    with pytest.raises(TaskFinished, match=f"already {state}"):
        check_transition("t", state, "working")


def test_retention_is_bounded() -> None:
    with pytest.raises(ConfigurationError, match="max_age"):
        TaskRetention(max_age=0)
    with pytest.raises(ConfigurationError, match="lease"):
        TaskRetention(lease=0.01)


def test_declarations_are_checked_at_once() -> None:
    a = Agent("a")
    with pytest.raises(ConfigurationError, match="on_lost"):
        a.task_handler(on_lost="ignore")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="max_attempts"):
        a.task_handler(max_attempts=0)

    def sync_job(x: int) -> int:
        return x

    with pytest.raises(ConfigurationError, match="async function or an async generator"):
        a.task_handler()(sync_job)

    @a.task_handler()
    async def job(x: int) -> int:
        return x

    async def other(x: int) -> int:
        return x

    with pytest.raises(ConfigurationError, match="already has a handler named 'job'"):
        a.task_handler(name="job")(other)


async def test_task_handlers_are_not_request_handlers_and_ask_needs_a_task() -> None:
    a = Agent("a")
    seen: dict[str, Any] = {}

    @a.task_handler()
    async def job(x: int) -> int:
        return x

    @a.handler
    async def plain(ctx: Context) -> int:
        seen["attempt"], seen["task_id"] = ctx.attempt, ctx.task_id
        try:
            await ctx.ask("?")
        except ConfigurationError as exc:
            seen["ask"] = str(exc)
        return 0

    async with Runtime(agents=[a]) as rt:
        client = rt.agent("client")
        with pytest.raises(UnknownHandler):
            await client.request("a", "job", {"x": 1})
        assert await client.request("a", "plain") == 0
    assert seen["attempt"] == 1
    assert seen["task_id"] is None
    assert "only in a durable task handler" in seen["ask"]


async def test_a_task_handler_declared_while_running_gets_a_worker() -> None:
    late = Agent("late")
    async with Runtime(agents=[late]) as rt:

        @late.task_handler()
        async def job(x: int) -> int:
            await asyncio.sleep(0)
            return x * 2

        handle = await rt.agent("client").start_task("late", "job", {"x": 21})
        assert await handle.result(timeout=5) == 42


async def test_shutdown_releases_a_running_task_for_the_next_worker() -> None:
    from agentcomm.transports.memory import MemoryTransport

    transport = MemoryTransport()
    started = asyncio.Event()

    def make() -> Agent:
        w = Agent("w")

        @w.task_handler(on_lost="fail")
        async def job(ctx: Context) -> int:
            started.set()
            if ctx.attempt == 1:
                await asyncio.sleep(3600)
            return ctx.attempt

        return w

    rt = Runtime(transport=transport, agents=[make()], drain_timeout=1.0)
    async with rt:
        handle = await rt.agent("client").start_task("w", "job")
        await asyncio.wait_for(started.wait(), 5)
    # The same engine, a new runtime: a released task is re-run, not failed as lost.
    async with Runtime(transport=transport, agents=[make()]) as rt2:
        again = rt2.agent("client").task(handle.id)
        assert await again.result(timeout=10) == 2


async def test_a_task_run_continues_the_starters_trace() -> None:
    pytest.importorskip("opentelemetry.sdk")
    from agentcomm.observability.tracing import TraceRecorder

    recorder = TraceRecorder()
    w = Agent("w")

    @w.task_handler()
    async def job(n: int, ctx: Context) -> int:
        await ctx.progress(1, 1, "half")
        if n < 0:
            raise ValueError("negative")
        return n

    async with Runtime(agents=[w], tracing=recorder.provider) as rt:
        client = rt.agent("client")
        ok = await client.start_task("w", "job", {"n": 1})
        assert await ok.result(timeout=5) == 1
        bad = await client.start_task("w", "job", {"n": -1})
        with pytest.raises(RemoteError):
            await bad.result(timeout=5)
    spans: dict[str, list[Any]] = {}
    for s in recorder.spans():
        spans.setdefault(s.name, []).append(s)
    starts, runs = spans["start_task w.job"], spans["process w.job"]
    assert len(starts) == len(runs) == 2
    assert {r.parent.span_id for r in runs} == {s.context.span_id for s in starts}
    attrs = dict(runs[0].attributes or {})
    assert attrs["agentcomm.attempt"] == 1
    assert attrs["agentcomm.task.id"] in (ok.id, bad.id)
    assert all("progress" in [e.name for e in r.events] for r in runs)
    assert sorted(r.status.is_ok for r in runs) == [False, True]


async def test_the_access_policy_covers_starting_cancelling_and_answering() -> None:
    from agentcomm import PermissionDenied

    def access(agent: str, action: str, target: str) -> None:
        if agent == "stranger" and action == "send":
            raise PermissionDenied(f"{agent} may not send to {target}")

    w = Agent("w")

    @w.task_handler()
    async def job(ctx: Context) -> bool:
        answer: bool = await ctx.ask("ok?", returns=bool, timeout=10)
        return answer

    async with Runtime(agents=[w], access=access) as rt:
        stranger = rt.agent("stranger")
        with pytest.raises(PermissionDenied):
            await stranger.start_task("w", "job")
        handle = await rt.agent("client").start_task("w", "job")
        other = stranger.task(handle.id)
        for _ in range(500):
            if (await handle.status()).state == "input-required":
                break
            await asyncio.sleep(0.01)
        with pytest.raises(PermissionDenied):
            await other.answer(True)
        with pytest.raises(PermissionDenied):
            await other.cancel()
        await handle.answer(True)
        assert await handle.result(timeout=5) is True


async def test_task_statistics_count_runs_by_outcome() -> None:
    """Issue 11: metrics cover tasks like every other message."""
    from agentcomm.observability.metric_specs import SPECS, View, observe

    w = Agent("w")

    @w.task_handler()
    async def ok(n: int) -> int:
        return n

    @w.task_handler()
    async def bad(n: int) -> int:
        raise RuntimeError("no")

    async with Runtime(agents=[w]) as rt:
        me = rt.agent("me")
        assert await (await me.start_task("w", "ok", {"n": 1})).result(timeout=10) == 1
        with pytest.raises(RemoteError):
            await (await me.start_task("w", "bad", {"n": 1})).result(timeout=10)
        stats = rt.tasks.statistics()
        assert (stats.started, stats.runs, stats.completed, stats.failed) == (2, 2, 1, 1)
        assert stats.running == 0
        view = View(rt)
        points = {s.name: observe(s, view) for s in SPECS if s.name.startswith("agentcomm.tasks.")}
        assert points["agentcomm.tasks.completed"] == [({}, 1.0)]
        assert points["agentcomm.tasks.failed"] == [({}, 1.0)]
        assert points["agentcomm.tasks.started"] == [({}, 2.0)]
