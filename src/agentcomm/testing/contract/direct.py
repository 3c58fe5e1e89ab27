"""Contract: direct messages (send, request/response, deadlines, fail-fast, backpressure).

Every test takes ``make_runtime`` and uses only the public API, so it runs unchanged
on every transport.
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest

from agentcomm.api import Agent, Context
from agentcomm.core.errors import (
    MailboxFull,
    NoResponders,
    RemoteError,
    RequestTimeout,
    UnknownHandler,
    ValidationError,
)
from agentcomm.testing.fixtures import MakeRuntime

__all__ = [
    "test_causation_and_deadline_travel",
    "test_handler_error_is_remote_error_and_responder_keeps_serving",
    "test_many_requests_in_flight_each_get_their_answer",
    "test_mailbox_full_fails_or_blocks_as_asked",
    "test_no_responders_is_immediate",
    "test_notification_is_delivered",
    "test_payloads_are_isolated",
    "test_request_response_typed",
    "test_shutdown_drains_in_flight_work",
    "test_timeout_is_request_timeout",
    "test_unknown_handler",
    "test_validation_error_handler_never_runs",
]


class Point(msgspec.Struct, frozen=True):
    x: int
    y: int


def _calc() -> tuple[Agent, dict[str, int]]:
    calls = {"add": 0}
    calc = Agent("calc", concurrency=8)

    @calc.handler
    async def add(a: int, b: int = 1) -> int:
        calls["add"] += 1
        return a + b

    @calc.handler
    async def mirror(p: Point) -> Point:
        return Point(x=p.y, y=p.x)

    @calc.handler
    async def divide(a: float, b: float) -> float:
        return a / b

    return calc, calls


async def test_request_response_typed(make_runtime: MakeRuntime) -> None:
    calc, _ = _calc()
    async with make_runtime(agents=[calc]) as rt:
        me = rt.agent("me")
        assert await me.request("calc", "add", {"a": 2, "b": 3}) == 5
        assert await me.request("calc", "add", {"a": 2}, returns=int) == 3
        assert await me.request("calc", "mirror", Point(1, 2), returns=Point) == Point(2, 1)
        assert await me.request("calc", "mirror", {"x": 5, "y": 6}) == {"x": 6, "y": 5}


async def test_many_requests_in_flight_each_get_their_answer(make_runtime: MakeRuntime) -> None:
    calc, _ = _calc()
    async with make_runtime(agents=[calc]) as rt:
        me = rt.agent("me")
        results = await asyncio.gather(
            *(me.request("calc", "add", {"a": i, "b": 1000}, returns=int) for i in range(300))
        )
        assert results == [i + 1000 for i in range(300)]


async def test_no_responders_is_immediate(make_runtime: MakeRuntime) -> None:
    async with make_runtime() as rt:
        me = rt.agent("me")
        async with asyncio.timeout(5):  # far below the request timeout: fail fast
            with pytest.raises(NoResponders) as info:
                await me.request("nobody", "ping", {}, timeout=60)
            with pytest.raises(NoResponders):
                await me.send("nobody", "ping", {})
        assert "nobody" in str(info.value)


async def test_timeout_is_request_timeout(make_runtime: MakeRuntime) -> None:
    slow = Agent("slow")
    release = asyncio.Event()
    seen_remaining: list[float | None] = []

    @slow.handler
    async def wait(ctx: Context) -> None:
        seen_remaining.append(ctx.remaining())
        await release.wait()

    async with make_runtime(agents=[slow]) as rt:
        me = rt.agent("me")
        with pytest.raises(RequestTimeout) as info:
            await me.request("slow", "wait", None, timeout=0.3)
        assert isinstance(info.value, TimeoutError)
        assert "slow.wait" in str(info.value)
        release.set()
    assert len(seen_remaining) == 1
    assert seen_remaining[0] is not None
    assert 0 < seen_remaining[0] <= 0.3


async def test_handler_error_is_remote_error_and_responder_keeps_serving(
    make_runtime: MakeRuntime,
) -> None:
    calc, _ = _calc()
    async with make_runtime(agents=[calc]) as rt:
        me = rt.agent("me")
        with pytest.raises(RemoteError) as info:
            await me.request("calc", "divide", {"a": 1, "b": 0})
        assert info.value.type == "ZeroDivisionError"
        assert "division by zero" in info.value.message
        assert await me.request("calc", "divide", {"a": 1, "b": 4}) == 0.25


async def test_validation_error_handler_never_runs(make_runtime: MakeRuntime) -> None:
    calc, calls = _calc()
    async with make_runtime(agents=[calc]) as rt:
        me = rt.agent("me")
        with pytest.raises(ValidationError) as info:
            await me.request("calc", "add", {"a": "one"})
        assert "$.a" in str(info.value)
        with pytest.raises(ValidationError):
            await me.request("calc", "add", {"a": 1, "unexpected": 2})
        with pytest.raises(ValidationError):
            await me.request("calc", "add", {})
        assert calls["add"] == 0


async def test_unknown_handler(make_runtime: MakeRuntime) -> None:
    calc, _ = _calc()
    async with make_runtime(agents=[calc]) as rt:
        with pytest.raises(UnknownHandler) as info:
            await rt.agent("me").request("calc", "multiply", {"a": 1})
        assert "multiply" in str(info.value)
        assert "add" in str(info.value)  # says what the agent does offer


async def test_notification_is_delivered(make_runtime: MakeRuntime) -> None:
    inbox = Agent("inbox")
    got: list[str] = []
    done = asyncio.Event()

    @inbox.handler
    async def note(text: str, ctx: Context) -> None:
        got.append(f"{ctx.sender}:{text}")
        if len(got) == 3:
            done.set()

    async with make_runtime(agents=[inbox]) as rt:
        me = rt.agent("me")
        for t in ("a", "b", "c"):
            await me.send("inbox", "note", {"text": t})
        async with asyncio.timeout(5):
            await done.wait()
    assert sorted(got) == ["me:a", "me:b", "me:c"]


async def test_mailbox_full_fails_or_blocks_as_asked(make_runtime: MakeRuntime) -> None:
    slow = Agent("slow", concurrency=1, mailbox_size=2)
    gate = asyncio.Event()
    started = asyncio.Event()
    handled: list[int] = []
    all_done = asyncio.Event()

    @slow.handler
    async def work(n: int) -> None:
        started.set()
        await gate.wait()
        handled.append(n)
        if len(handled) == 4:
            all_done.set()

    async with make_runtime(agents=[slow]) as rt:
        me = rt.agent("me")
        await me.send("slow", "work", {"n": 0})
        async with asyncio.timeout(5):
            await started.wait()  # the single worker is now busy
        await me.send("slow", "work", {"n": 1}, block=False)
        await me.send("slow", "work", {"n": 2}, block=False)  # two fit in the mailbox
        with pytest.raises(MailboxFull):
            await me.send("slow", "work", {"n": 3}, block=False)
        sent = 3
        blocked = asyncio.ensure_future(me.send("slow", "work", {"n": 99}))
        for _ in range(20):
            await asyncio.sleep(0)
        assert not blocked.done()  # waits for room instead of failing
        gate.set()
        async with asyncio.timeout(5):
            await blocked
            await all_done.wait()
    assert sorted(handled) == [*range(sent), 99]


async def test_payloads_are_isolated(make_runtime: MakeRuntime) -> None:
    keeper = Agent("keeper")
    gate = asyncio.Event()
    kept: list[dict[str, Any]] = []

    @keeper.handler
    async def keep(value: dict[str, Any]) -> dict[str, Any]:
        await gate.wait()
        kept.append(value)
        value["touched_by_receiver"] = True
        return value

    async with make_runtime(agents=[keeper]) as rt:
        me = rt.agent("me")
        mine: dict[str, Any] = {"nested": [1, 2]}
        task = asyncio.ensure_future(me.request("keeper", "keep", {"value": mine}))
        for _ in range(5):
            await asyncio.sleep(0)  # the request has left the sender
        mine["nested"].append(3)  # mutate after sending: the receiver must not see it
        gate.set()
        answer = await task
        assert kept == [{"nested": [1, 2], "touched_by_receiver": True}]
        assert answer == {"nested": [1, 2], "touched_by_receiver": True}
        assert mine == {"nested": [1, 2, 3]}  # the receiver's change did not reach us
        answer["nested"].append(4)
        assert kept[0]["nested"] == [1, 2]  # nor does the sender's change reach it


async def test_causation_and_deadline_travel(make_runtime: MakeRuntime) -> None:
    front, back = Agent("front"), Agent("back")
    seen: dict[str, Any] = {}

    @back.handler
    async def inner(ctx: Context) -> str:
        seen["causation"] = ctx.envelope.causation_id
        seen["remaining"] = ctx.remaining()
        return "ok"

    @front.handler
    async def outer(ctx: Context) -> str:
        seen["outer_id"] = ctx.envelope.id
        return str(await ctx.request("back", "inner"))

    async with make_runtime(agents=[front, back]) as rt:
        assert await rt.agent("me").request("front", "outer", None, timeout=5) == "ok"
    assert seen["causation"] == seen["outer_id"]
    assert seen["remaining"] is not None
    assert seen["remaining"] <= 5


async def test_shutdown_drains_in_flight_work(make_runtime: MakeRuntime) -> None:
    worker = Agent("worker", concurrency=1)
    started = asyncio.Event()
    finished: list[int] = []

    @worker.handler
    async def job(n: int) -> None:
        started.set()
        await asyncio.sleep(0.05)
        finished.append(n)

    async with make_runtime(agents=[worker], drain_timeout=5) as rt:
        me = rt.agent("me")
        for n in range(3):
            await me.send("worker", "job", {"n": n})
        async with asyncio.timeout(5):
            await started.wait()
    assert finished == [0, 1, 2]
