"""Contract: durable tasks and asking the caller (docs/streams-and-tasks.md, "Durable tasks").

Every test takes ``make_runtime`` and uses only the public API, so it runs unchanged
on every transport. Process crashes (a caller or a worker killed with SIGKILL) are
in ``tests/tasks/test_tasks_processes.py``: they need a broker other processes reach.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest

from agentcomm import (
    Agent,
    AuthenticationError,
    Context,
    InputTimeout,
    PermissionDenied,
    RemoteError,
    TaskCancelled,
    TaskFinished,
    TaskHandle,
    TaskNotWaiting,
    TaskStatus,
    TaskUpdate,
    UnknownHandler,
    UnknownTask,
    ValidationError,
)
from agentcomm.core.envelope import Envelope, new_id
from agentcomm.security.policy import Policy
from agentcomm.security.signing import Identity, Security
from agentcomm.tasks.model import WORK_STREAM, work_subject
from agentcomm.testing.fixtures import MakeRuntime

__all__ = [
    "test_ask_and_answer_with_a_bad_answer_first",
    "test_ask_timeout_is_typed_in_the_handler",
    "test_cancel_a_queued_task",
    "test_cancel_a_task_waiting_for_input",
    "test_cancel_reaches_the_running_handler",
    "test_generator_task_streams_artifacts_and_refuses_bad_chunks",
    "test_start_task_returns_at_once_and_result_is_typed",
    "test_tasks_are_signed_and_policed",
    "test_task_failures_are_typed",
    "test_unknown_task_and_wrong_state_are_typed",
    "test_updates_resume_from_a_cursor_with_nothing_lost_or_repeated",
]


class Report(msgspec.Struct):
    """A typed result."""

    topic: str
    pages: int


class _Seen:
    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.cancelled = asyncio.Event()
        self.producer_heard = False
        self.gate = asyncio.Event()


def _worker(seen: _Seen) -> Agent:
    w = Agent("researcher", concurrency=4)

    @w.task_handler()
    async def survey(topic: str, pages: int, ctx: Context) -> Report:
        for i in range(pages):
            await ctx.progress(i + 1, pages, f"page {i + 1}")
        return Report(topic=topic, pages=pages)

    @w.task_handler()
    async def gated(n: int, ctx: Context) -> int:
        for i in range(n):
            await ctx.progress(i + 1, n)
            if i == n // 2:
                await seen.gate.wait()  # the test reads half, then lets it finish
        return n

    @w.task_handler()
    async def endless(ctx: Context) -> None:
        seen.started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            seen.cancelled.set()
            raise

    @w.task_handler()
    async def confirm(amount: float, ctx: Context) -> str:
        ok = await ctx.ask(f"Spend ${amount}?", returns=bool, timeout=30)
        return f"approved={ok} attempt={ctx.attempt}"

    @w.task_handler()
    async def impatient(ctx: Context) -> str:
        try:
            await ctx.ask("anyone?", returns=int, timeout=0.3)
        except InputTimeout:
            return "nobody answered"
        return "answered"

    @w.task_handler()
    async def broken(x: int) -> int:
        raise RuntimeError(f"cannot handle {x}")

    @w.task_handler()
    async def chunks(n: int) -> AsyncIterator[int]:
        for i in range(n):
            try:
                yield i if i != 1 else "bad"  # type: ignore[misc]
            except ValidationError:
                seen.producer_heard = True

    return w


async def _until_state(handle: TaskHandle[Any], state: str, timeout: float = 10.0) -> TaskStatus:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        status = await handle.status()
        if status.state == state:
            return status
        if loop.time() > end:
            raise AssertionError(f"task stayed {status.state}, never {state}")
        await asyncio.sleep(0.02)


async def test_start_task_returns_at_once_and_result_is_typed(make_runtime: MakeRuntime) -> None:
    async with make_runtime(agents=[_worker(_Seen())]) as rt:
        client = rt.agent("client")
        handle = await client.start_task(
            "researcher", "survey", {"topic": "tea", "pages": 3}, returns=Report
        )
        assert isinstance(handle.id, str)
        assert handle.id
        report = await handle.result(timeout=10)
        assert report == Report(topic="tea", pages=3)
        status = await handle.status()
        assert status.state == "completed"
        assert status.done
        assert status.attempt == 1
        assert status.caller == "client"
        assert status.agent == "researcher"
        assert status.progress is not None
        assert status.progress.fraction == 1.0
        listed = {s.id: s.state for s in await rt.tasks.list()}
        assert listed[handle.id] == "completed"


async def test_updates_resume_from_a_cursor_with_nothing_lost_or_repeated(
    make_runtime: MakeRuntime,
) -> None:
    seen = _Seen()
    async with make_runtime(agents=[_worker(seen)]) as rt:
        client = rt.agent("client")
        handle = await client.start_task("researcher", "gated", {"n": 10})
        first: list[TaskUpdate] = []
        async for u in handle.updates():
            first.append(u)
            if u.kind == "progress" and u.progress is not None and u.progress.done == 3:
                break  # a caller that goes away mid-task
        seen.gate.set()
        assert (await handle.result(timeout=10)) == 10
        cursor = first[-1].cursor
        async with make_runtime() as other:  # another runtime re-attaches by id
            again = other.agent("client2").task(handle.id)
            later = [u async for u in again.updates(since=cursor)]
        everything = [u async for u in handle.updates()]
    assert [u.cursor for u in first + later] == [u.cursor for u in everything]
    assert len({u.cursor for u in everything}) == len(everything)
    kinds = [u.kind for u in everything]
    assert kinds[0] == "state"
    assert everything[0].state == "submitted"
    assert kinds.count("progress") == 10
    assert kinds[-1] == "result"
    assert everything[-1].final
    assert everything[-1].data == 10
    assert [u.progress.done for u in everything if u.progress is not None] == list(range(1, 11))


async def test_cancel_reaches_the_running_handler(make_runtime: MakeRuntime) -> None:
    seen = _Seen()
    async with make_runtime(agents=[_worker(seen)]) as rt:
        handle = await rt.agent("client").start_task("researcher", "endless")
        await asyncio.wait_for(seen.started.wait(), 10)
        await _until_state(handle, "working")
        t0 = time.perf_counter()
        status = await handle.cancel()
        assert status.state == "canceled"
        await asyncio.wait_for(seen.cancelled.wait(), 5)
        assert time.perf_counter() - t0 < 2.0
        with pytest.raises(TaskCancelled, match="canceled"):
            await handle.result(timeout=5)
        with pytest.raises(TaskFinished, match="already canceled"):
            await handle.cancel()
        updates = [u async for u in handle.updates()]
        assert updates[-1].state == "canceled"
        assert updates[-1].final


async def test_cancel_a_queued_task(make_runtime: MakeRuntime) -> None:
    async with make_runtime() as rt:  # nobody serves "researcher": the task stays queued
        handle = await rt.agent("client").start_task("researcher", "survey", {"topic": "x"})
        assert (await handle.status()).state == "submitted"
        status = await handle.cancel(timeout=5)
        assert status.state == "canceled"
        with pytest.raises(TaskCancelled):
            await handle.result(timeout=1)


async def test_cancel_a_task_waiting_for_input(make_runtime: MakeRuntime) -> None:
    async with make_runtime(agents=[_worker(_Seen())]) as rt:
        handle = await rt.agent("client").start_task("researcher", "confirm", {"amount": 1})
        await _until_state(handle, "input-required")
        status = await handle.cancel()
        assert status.state == "canceled"
        assert status.question is None
        with pytest.raises(TaskFinished, match="too late"):
            await handle.answer(True)
        with pytest.raises(TaskCancelled):
            await handle.result(timeout=5)


async def test_ask_and_answer_with_a_bad_answer_first(make_runtime: MakeRuntime) -> None:
    async with make_runtime(agents=[_worker(_Seen())]) as rt:
        client = rt.agent("client")
        handle = await client.start_task("researcher", "confirm", {"amount": 40}, returns=str)
        status = await _until_state(handle, "input-required")
        assert status.question is not None
        assert status.question.text == "Spend $40.0?"
        assert status.question.schema == {"type": "boolean"}
        with pytest.raises(ValidationError, match="refused the answer"):
            await handle.answer("maybe")
        assert (await handle.status()).state == "input-required"  # still waiting
        await client.task(handle.id).answer(True)  # any handle with the id may answer
        assert await handle.result(timeout=10) == "approved=True attempt=1"
        states = [u.state for u in [u async for u in handle.updates()] if u.kind == "state"]
        assert states == ["submitted", "working", "input-required", "working"]
        with pytest.raises(TaskFinished):
            await handle.answer(False)


async def test_ask_timeout_is_typed_in_the_handler(make_runtime: MakeRuntime) -> None:
    async with make_runtime(agents=[_worker(_Seen())]) as rt:
        handle = await rt.agent("client").start_task("researcher", "impatient")
        assert await handle.result(timeout=10) == "nobody answered"


async def test_task_failures_are_typed(make_runtime: MakeRuntime) -> None:
    async with make_runtime(agents=[_worker(_Seen())]) as rt:
        client = rt.agent("client")
        failing = await client.start_task("researcher", "broken", {"x": 7})
        with pytest.raises(RemoteError, match="cannot handle 7") as info:
            await failing.result(timeout=10)
        assert info.value.type == "RuntimeError"
        assert (await failing.status()).error is not None
        bad = await client.start_task("researcher", "survey", {"topic": 1})
        with pytest.raises(ValidationError):
            await bad.result(timeout=10)
        unknown = await client.start_task("researcher", "nothing_here")
        with pytest.raises(UnknownHandler, match="no task handler 'nothing_here'"):
            await unknown.result(timeout=10)


async def test_unknown_task_and_wrong_state_are_typed(make_runtime: MakeRuntime) -> None:
    seen = _Seen()
    async with make_runtime(agents=[_worker(seen)]) as rt:
        client = rt.agent("client")
        ghost = client.task("0" * 32)
        for call in (ghost.status(), ghost.result(timeout=1), ghost.cancel(), ghost.answer(1)):
            with pytest.raises(UnknownTask, match="no task"):
                await call
        with pytest.raises(UnknownTask):
            await client.task("not a valid id!").status()
        handle = await client.start_task("researcher", "endless")
        await _until_state(handle, "working")
        with pytest.raises(TaskNotWaiting, match="not waiting for input"):
            await handle.answer(True)
        await handle.cancel()
        done = await client.start_task("researcher", "survey", {"topic": "t", "pages": 1})
        await done.result(timeout=10)
        with pytest.raises(TaskFinished, match="already completed"):
            await done.cancel()


async def test_generator_task_streams_artifacts_and_refuses_bad_chunks(
    make_runtime: MakeRuntime,
) -> None:
    seen = _Seen()
    async with make_runtime(agents=[_worker(seen)]) as rt:
        handle = await rt.agent("client").start_task("researcher", "chunks", {"n": 4})
        assert await handle.result(timeout=10) is None
        artifacts = [u.data for u in [u async for u in handle.updates()] if u.kind == "artifact"]
    assert artifacts == [0, 2, 3]
    assert seen.producer_heard


async def test_tasks_are_signed_and_policed(make_runtime: MakeRuntime) -> None:
    """With signing and a policy: the work is signed and checked; forged work fails."""
    ids = [Identity.generate(n) for n in ("client", "researcher", "outsider")]
    policy = Policy.from_toml(
        """
        [agents.client]
        send = ["researcher.survey", "idle"]
        [agents.researcher]
        [agents.outsider]
        """,
        source="tasks.toml",
    )
    async with make_runtime(
        agents=[_worker(_Seen())], security=Security(identities=ids), access=policy
    ) as rt:
        client = rt.agent("client")
        done = await client.start_task("researcher", "survey", {"topic": "t", "pages": 2})
        assert await done.result(timeout=10) == {"topic": "t", "pages": 2}
        with pytest.raises(PermissionDenied):
            await rt.agent("outsider").start_task("researcher", "survey", {"topic": "t"})
        with pytest.raises(PermissionDenied):
            await client.start_task("researcher", "broken", {"x": 1})  # not in its rules
        # Work the client never signed, queued past the library for a real task of its:
        # the worker refuses it and the task fails with the reason; survey never runs.
        waiting = await client.start_task("idle", "nothing")  # no such worker: it waits
        forged = Envelope(
            id=new_id(),
            kind="event",
            sender="client",
            recipient="researcher",
            handler="survey",
            topic=work_subject("researcher"),
            key=waiting.id,
            payload=msgspec.Raw(msgspec.json.encode({"topic": "forged", "pages": 1})),
        )
        await rt.transport.append(WORK_STREAM, forged)
        with pytest.raises(AuthenticationError, match=r"not signed|signature"):
            await waiting.result(timeout=10)
