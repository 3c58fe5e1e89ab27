"""Contract: pub/sub under faults (stuck handlers, a subscription loop that fails).

A stuck handler is cancelled after its ``handler_timeout``, retried, then
dead-lettered as ``"timeout"`` while the events behind it flow; a subscription
whose loop fails unexpectedly restarts, says so in its statistics and loses none
of the events it held. Faults are injected through the transport's public
``open_consumer`` (a wrapper around the engine's real consumer), so the suite runs
unchanged on every engine.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from agentcomm.api import Agent, Context, Runtime
from agentcomm.core.flow import RetryPolicy
from agentcomm.testing.contract.pubsub import DEADLINE, Seen, _dead_letters
from agentcomm.testing.fixtures import MakeRuntime
from agentcomm.transports.streams import ConsumerConfig, ConsumerInfo, LogConsumer, LogMessage

__all__ = [
    "test_a_failing_fetch_restarts_the_subscription",
    "test_a_failing_worker_restarts_the_subscription_and_loses_no_event",
    "test_keyed_stuck_handler_times_out_and_its_key_goes_on",
    "test_stuck_handler_times_out_is_retried_then_dead_lettered",
]

TWICE = RetryPolicy(max_attempts=2, backoff=0.01, max_backoff=0.02, jitter=0.0)


async def _forever() -> None:
    await asyncio.Event().wait()


async def test_stuck_handler_times_out_is_retried_then_dead_lettered(
    make_runtime: MakeRuntime,
) -> None:
    seen = Seen()
    attempts: list[int] = []
    a = Agent("a")

    @a.on("jobs", retry=TWICE, concurrency=1, handler_timeout=0.2)
    async def work(id: int) -> None:  # no Context: the subscription's fast path
        if id == 0:
            attempts.append(id)
            await _forever()
        seen.add(id)

    async with make_runtime(agents=[a]) as rt:
        p = rt.agent("p")
        stuck = await p.publish("jobs", {"id": 0})
        for i in range(1, 6):
            await p.publish("jobs", {"id": i})
        await seen.count(5)  # one worker only: they ran while the stuck one waited
        (dl,) = await _dead_letters(rt, 1, subscription="a__work")
        snap = await rt.events.refresh()
    assert sorted(seen.items) == [1, 2, 3, 4, 5]
    assert attempts == [0, 0], "cancelled, retried once, then dead-lettered"
    assert (dl.reason, dl.attempts, dl.event.sequence) == ("timeout", 2, stuck)
    assert "handler_timeout=0.2" in (dl.last_error or "")
    sub = snap.subscription("a__work")
    assert (sub.timeouts, sub.retried, sub.dead_lettered, sub.acked) == (2, 1, 1, 5)
    assert (sub.running, sub.in_flight, sub.restarts) == (0, 0, 0)
    assert snap.topic("jobs").timeouts == 2


async def test_keyed_stuck_handler_times_out_and_its_key_goes_on(
    make_runtime: MakeRuntime,
) -> None:
    seen = Seen()
    a = Agent("a")

    @a.on("acct", retry=TWICE, concurrency=1, handler_timeout=0.15)
    async def apply(n: int, ctx: Context) -> None:  # with Context: the general path
        if n == 0:
            await _forever()  # the key's head: retried here, its key waits meanwhile
        seen.add((ctx.envelope.key, n))

    async with make_runtime(agents=[a]) as rt:
        p = rt.agent("p")
        for n in range(4):
            await p.publish("acct", {"n": n}, key="A")
        await seen.count(3)
        (dl,) = await _dead_letters(rt, 1)
        snap = await rt.events.refresh()
    assert seen.items == [("A", 1), ("A", 2), ("A", 3)], "in order, after the stuck head"
    assert (dl.reason, dl.attempts) == ("timeout", 2)
    assert snap.subscription("a__apply").timeouts == 2


class _Faulty:
    """Wraps ``rt.transport.open_consumer``: the consumers it opens fail as told, once."""

    def __init__(self, rt: Runtime, *, fetch: bool = False, ack: bool = False) -> None:
        self.opened = 0
        self.fetch_fails = fetch
        self.ack_fails = ack
        self.failed = asyncio.Event()
        self.armed = asyncio.Event()
        self._open = rt.transport.open_consumer
        rt.transport.open_consumer = self.open_consumer  # type: ignore[method-assign]

    async def open_consumer(self, stream: str, config: ConsumerConfig) -> LogConsumer:
        consumer = await self._open(stream, config)
        self.opened += 1
        return _FaultyConsumer(consumer, self) if stream == "EVENTS" else consumer

    def fail_now(self, what: str) -> bool:
        if getattr(self, f"{what}_fails") and self.armed.is_set() and not self.failed.is_set():
            self.failed.set()
            return True
        return False


class _FaultyConsumer(LogConsumer):
    __slots__ = ("_faults", "_inner", "name")

    def __init__(self, inner: LogConsumer, faults: _Faulty) -> None:
        self._inner = inner
        self._faults = faults
        self.name = inner.name

    async def fetch(self, max_messages: int, timeout: float) -> list[LogMessage]:
        if self._faults.fail_now("fetch"):
            raise RuntimeError("injected fetch failure")
        msgs = await self._inner.fetch(max_messages, min(timeout, 0.05))
        return [_FaultyMessage(m, self._faults) for m in msgs]

    async def info(self) -> ConsumerInfo:
        return await self._inner.info()

    async def close(self) -> None:
        await self._inner.close()


class _FaultyMessage(LogMessage):
    __slots__ = ("_faults", "_inner", "envelope", "num_delivered", "sequence")

    def __init__(self, inner: LogMessage, faults: _Faulty) -> None:
        self._inner = inner
        self._faults = faults
        self.envelope = inner.envelope
        self.sequence = inner.sequence
        self.num_delivered = inner.num_delivered

    async def ack(self) -> None:
        if self._faults.fail_now("ack"):
            raise RuntimeError("injected ack failure")
        await self._inner.ack()

    async def nak(self, delay: float | None = None) -> None:
        await self._inner.nak(delay)

    async def term(self) -> None:
        await self._inner.term()

    async def in_progress(self) -> None:
        await self._inner.in_progress()


async def _until(what: str, check: Callable[[], Awaitable[Any]]) -> Any:
    """Poll ``check`` (bounded by DEADLINE) until it returns something true; return it."""
    for _ in range(int(DEADLINE / 0.005)):
        if got := await check():
            return got
        await asyncio.sleep(0.005)
    raise AssertionError(f"not {what} after {DEADLINE}s")


async def _restarted(rt: Runtime, name: str) -> Any:
    async def check() -> Any:
        s = rt.events.statistics().subscription(name)
        return s if s.restarts else None

    return await _until("restarted", check)


async def _settled(rt: Runtime, name: str) -> Any:
    """A refreshed snapshot once the subscription holds nothing (every event settled)."""

    async def check() -> Any:
        snap = await rt.events.refresh()
        return None if snap.subscription(name).in_flight else snap

    return await _until("settled", check)


def _holding(rt: Runtime, name: str, n: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return rt.events.statistics().subscription(name).in_flight >= n

    return check


async def test_a_failing_fetch_restarts_the_subscription(make_runtime: MakeRuntime) -> None:
    seen = Seen()
    gate = asyncio.Event()
    a = Agent("a")

    @a.on("jobs", concurrency=1, max_in_flight=8)
    async def work(id: int) -> None:
        if id == 0:
            await gate.wait()  # held while the loop fails: cut short, delivered again
        seen.add(id)

    rt = make_runtime(agents=[a])
    faults = _Faulty(rt, fetch=True)
    async with rt:
        p = rt.agent("p")
        for i in range(4):  # 0 runs, 1-3 wait behind it (held, not yet handled)
            await p.publish("jobs", {"id": i})
        await _until("holding 4", _holding(rt, "a__work", 4))
        faults.armed.set()  # the next fetch raises RuntimeError
        s = await _restarted(rt, "a__work")
        gate.set()
        for i in range(4, 8):  # and it goes on delivering
            await p.publish("jobs", {"id": i})
        await seen.wait(lambda items: set(items) >= set(range(8)))
        assert rt.running, "the runtime did not end"
        snap = await _settled(rt, "a__work")
    assert (s.restarts, s.last_error) == (1, "RuntimeError: injected fetch failure")
    assert faults.opened >= 2, "the consumer was opened again"
    sub = snap.subscription("a__work")
    assert (sub.restarts, sub.stopped, sub.in_flight, sub.dead_lettered) == (1, None, 0, 0)


async def test_a_failing_worker_restarts_the_subscription_and_loses_no_event(
    make_runtime: MakeRuntime,
) -> None:
    seen = Seen()
    a = Agent("a")

    @a.on("jobs", concurrency=2, retry=TWICE)
    async def work(id: int) -> None:
        seen.add(id)

    rt = make_runtime(agents=[a])
    faults = _Faulty(rt, ack=True)
    faults.armed.set()  # the first ack raises RuntimeError inside a worker
    async with rt:
        p = rt.agent("p")
        for i in range(5):
            await p.publish("jobs", {"id": i})
        s = await _restarted(rt, "a__work")
        await seen.wait(lambda items: set(items) == set(range(5)))
        await p.publish("jobs", {"id": 5})
        await seen.wait(lambda items: 5 in items)
        snap = await _settled(rt, "a__work")
        assert rt.running
    assert (s.restarts, s.last_error) == (1, "RuntimeError: injected ack failure")
    first = seen.items[0]  # its ack failed: handed back and handled again (at least once)
    assert seen.items.count(first) >= 2
    sub = snap.subscription("a__work")
    assert (sub.restarts, sub.dead_lettered, sub.lag) == (1, 0, 0)
