"""Contract: several runtimes on one engine, as several processes share a broker.

One agent name started in two runtimes is a queue group (each message to one of
them), a cancel reaches whichever one runs the call, the patterns cross runtimes
(an event published in one reaches a subscriber in the other, a blackboard write
the other's watch), and a runtime that closes leaves the engine working for the
rest. In memory the runtimes share one ``MemoryTransport``; on NATS each has its
own connection: the tests mean the same on both.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from agentcomm.api import Agent, Context, Runtime
from agentcomm.testing.contract.pubsub import DEADLINE, Seen
from agentcomm.testing.fixtures import MakeRuntime

__all__ = [
    "test_a_cancel_reaches_the_runtime_running_the_call",
    "test_an_agent_in_two_runtimes_is_a_queue_group",
    "test_closing_one_runtime_leaves_the_other_working",
    "test_events_and_board_writes_cross_runtimes",
]


def _worker(where: str, served: Seen) -> Agent:
    worker = Agent("worker", concurrency=4)

    @worker.handler
    async def who(n: int) -> list[object]:
        served.add(where)
        return [where, n]

    @worker.handler
    async def note(n: int) -> None:
        served.add(where)

    return worker


async def _reachable(*runtimes: Runtime) -> None:
    for rt in runtimes:  # their bindings are known to the whole engine from here on
        await rt.transport.flush()


async def test_an_agent_in_two_runtimes_is_a_queue_group(make_runtime: MakeRuntime) -> None:
    served = Seen()
    async with (
        make_runtime(agents=[_worker("one", served)]) as rt1,
        make_runtime(agents=[_worker("two", served)]) as rt2,
    ):
        await _reachable(rt1, rt2)
        client = rt1.agent("client")
        answers = await asyncio.gather(
            *(client.request("worker", "who", {"n": n}) for n in range(40))
        )
        for n in range(10):
            await client.send("worker", "note", {"n": n})
        await served.count(50)
    assert sorted(n for _, n in answers) == list(range(40)), "each request answered once"
    assert {where for where, _ in answers} == {"one", "two"}, "both runtimes served"
    assert len(served.items) == 50, "each request and notification reached one of them"


def _writer(where: str, running: Seen, cancelled: Seen) -> Agent:
    writer = Agent("writer", concurrency=4)

    @writer.handler
    async def count(n: int, ctx: Context) -> AsyncIterator[int]:
        running.add((where, ctx.envelope.id))
        try:
            for i in range(n):
                yield i
        except asyncio.CancelledError:
            cancelled.add((where, ctx.envelope.id))
            raise

    return writer


async def test_a_cancel_reaches_the_runtime_running_the_call(make_runtime: MakeRuntime) -> None:
    running, cancelled = Seen(), Seen()
    async with (
        make_runtime(agents=[_writer("one", running, cancelled)]) as rt1,
        make_runtime(agents=[_writer("two", running, cancelled)]) as rt2,
    ):
        await _reachable(rt1, rt2)
        client = rt2.agent("client")
        for _ in range(6):  # credit and cancel signals go to both; one runs each call
            stream = await client.stream("writer", "count", {"n": 10**9}, returns=int, timeout=60)
            async for x in stream:
                if x == 50:
                    break
        await cancelled.count(6)
    assert len(running.items) == 6
    assert sorted(cancelled.items) == sorted(running.items), "cancelled where it ran, once"


async def test_events_and_board_writes_cross_runtimes(make_runtime: MakeRuntime) -> None:
    seen = Seen()
    listener = Agent("listener")

    @listener.on("orders.*", start="all")
    async def on_order(id: int, ctx: Context) -> None:
        seen.add((id, ctx.sender))

    async with make_runtime(agents=[listener]) as rt1, make_runtime() as rt2:
        watch = rt1.board.watch("plan.", snapshot=False)
        async with watch:
            await rt2.agent("shop").publish("orders.created", {"id": 7})
            await seen.count(1)
            await rt2.board.write("plan.goal", {"text": "ship"})
            async with asyncio.timeout(DEADLINE):
                change = await anext(aiter(watch))
        assert (change.key, change.value) == ("plan.goal", {"text": "ship"})
        record = await rt1.board.read("plan.goal")
        assert record is not None
        assert record.value == {"text": "ship"}
    assert seen.items == [(7, "shop")]


async def test_closing_one_runtime_leaves_the_other_working(make_runtime: MakeRuntime) -> None:
    served, seen = Seen(), Seen()
    listener = Agent("listener")

    @listener.on("ticks")
    async def tick(n: int) -> None:
        seen.add(n)

    rt2 = make_runtime(agents=[_worker("two", served), listener])
    async with rt2:
        async with make_runtime(agents=[_worker("one", served)]) as rt1:
            await _reachable(rt1, rt2)
            await rt1.board.write("k", 1)
            assert await rt1.agent("c1").request("worker", "who", {"n": 0}) is not None
        # rt1 is gone: its agent left the group, the engine stays up for rt2
        client = rt2.agent("client")
        answers = [await client.request("worker", "who", {"n": n}, timeout=5) for n in range(10)]
        assert {where for where, _ in answers} == {"two"}
        assert await rt2.board.update("k", lambda v: v + 1) is not None
        record = await rt2.board.read("k")
        assert record is not None
        assert record.value == 2
        await client.publish("ticks", {"n": 1})
        await seen.count(1)
    assert seen.items == [1]
