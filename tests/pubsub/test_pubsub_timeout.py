"""Handler timeouts and subscription restarts: the details the contract suite leaves out.

(The contract, on every engine: agentcomm.testing.contract.pubsub_faults.)
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import time
from typing import Any

import pytest

from agentcomm import Agent, ConfigurationError, RetryPolicy, Runtime, TransportError
from agentcomm.api import Context
from agentcomm.observability.tracing import TraceRecorder
from agentcomm.pubsub.declare import HANDLER_TIMEOUT, subscriptions_of
from agentcomm.testing.contract.pubsub import Seen
from agentcomm.testing.waits import wait_dead_letters
from agentcomm.transports.memory.transport import MemoryTransport
from agentcomm.transports.streams import ConsumerConfig, LogConsumer

ONCE = RetryPolicy(max_attempts=1)
TWICE = RetryPolicy(max_attempts=2, backoff=0.01, jitter=0.0)


async def _until(cond: Any) -> None:
    """Poll ``cond`` until true (bounded: 10 s)."""
    for _ in range(2000):
        if cond():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition not met after 10 s")


# -- declaration -------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [0, -1.0, math.nan, math.inf, True, "5"])
def test_handler_timeout_must_be_positive_seconds_or_none(bad: Any) -> None:
    a = Agent("a")
    with pytest.raises(ConfigurationError, match="handler_timeout must be positive"):
        a.on("x", handler_timeout=bad)


def test_default_handler_timeout_is_the_same_everywhere() -> None:
    a = Agent("a")

    @a.on("x")
    async def h() -> None: ...

    @a.on("y", handler_timeout=None)
    async def never() -> None: ...

    @a.on("z", handler_timeout=2)
    async def two() -> None: ...

    assert inspect.signature(Agent.on).parameters["handler_timeout"].default == HANDLER_TIMEOUT
    assert [s.handler_timeout for s in subscriptions_of(a)] == [HANDLER_TIMEOUT, None, 2.0]
    assert HANDLER_TIMEOUT == 300.0


# -- timeouts ------------------------------------------------------------------------------
async def test_a_run_is_cancelled_after_its_timeout_not_before() -> None:
    started: list[float] = []
    cancelled: list[float] = []
    a = Agent("a")

    @a.on("x", retry=ONCE, handler_timeout=0.2)
    async def stuck() -> None:
        started.append(time.monotonic())
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(time.monotonic())
            raise

    async with Runtime(agents=[a]) as rt:
        await rt.agent("p").publish("x")
        (dl,) = await wait_dead_letters(rt, 1)
    assert dl.reason == "timeout"
    took = cancelled[0] - started[0]
    assert 0.2 <= took < 1.0, took  # 0.2 s, and at most a tenth later (plus load)


async def test_a_handler_that_swallows_the_cancel_leaves_its_worker_sound() -> None:
    seen = Seen()
    a = Agent("a")

    @a.on("x", retry=ONCE, concurrency=1, handler_timeout=0.1)
    async def stubborn(n: int) -> None:
        if n == 0:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                pass  # swallowed: it returns normally, so its event is acked
        if n == 2:
            await asyncio.Event().wait()  # a later stuck run still times out
        seen.add(n)

    async with Runtime(agents=[a]) as rt:
        p = rt.agent("p")
        for n in range(4):
            await p.publish("x", {"n": n})
        await seen.count(3)
        (dl,) = await wait_dead_letters(rt, 1)
        await _until(lambda: rt.events.statistics().subscriptions[0].in_flight == 0)
        sub = rt.events.statistics().subscriptions[0]
    assert seen.items == [0, 1, 3]
    assert (dl.reason, sub.acked, sub.dead_lettered) == ("timeout", 3, 1)


async def test_a_sync_handler_cannot_be_cancelled_its_overrun_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen = Seen()
    a = Agent("a")

    @a.on("x", handler_timeout=0.01)
    def slow(n: int) -> None:
        time.sleep(0.05)  # the behaviour under test: a sync handler blocking the loop
        seen.add(n)

    with caplog.at_level(logging.WARNING, logger="agentcomm"):
        async with Runtime(agents=[a]) as rt:
            await rt.agent("p").publish("x", {"n": 1})
            await seen.count(1)
            await _until(lambda: rt.events.statistics().subscriptions[0].acked == 1)
            sub = rt.events.statistics().subscriptions[0]
    assert (sub.timeouts, sub.retried, sub.dead_lettered) == (0, 0, 0)
    assert any("cannot be cancelled" in r.getMessage() for r in caplog.records)


async def test_redrive_and_replay_enforce_the_timeout_too() -> None:
    a = Agent("a")
    runs: list[int] = []

    @a.on("x", retry=ONCE, handler_timeout=0.05, start="all")
    async def stuck(n: int) -> None:
        runs.append(n)
        await asyncio.Event().wait()

    async with Runtime(agents=[a]) as rt:
        await rt.agent("p").publish("x", {"n": 1})
        (dl,) = await wait_dead_letters(rt, 1)
        assert await rt.events.redrive(dl.sequence) is False  # timed out again
        (again,) = await wait_dead_letters(rt, 1)
        assert await rt.events.replay("a") == 1  # handled: dead-lettered as timeout
        dls = await wait_dead_letters(rt, 2)
        sub = rt.events.statistics().subscriptions[0]
    assert runs == [1, 1, 1]
    assert [d.reason for d in [dl, again, *dls]] == ["timeout"] * 4
    assert sub.timeouts == 3


async def test_timeouts_are_span_events_and_alertable() -> None:
    recorder = TraceRecorder()
    alerts: list[Any] = []
    a = Agent("a")

    @a.on("x", retry=TWICE, handler_timeout=0.05)
    async def stuck(ctx: Context) -> None:
        await asyncio.Event().wait()

    async with Runtime(agents=[a], tracing=recorder.provider) as rt:
        rt.events.alert("timeouts", above=1, callback=alerts.append)
        with pytest.raises(ConfigurationError):
            rt.events.alert("last_error", above=0, callback=alerts.append)
        await rt.agent("p").publish("x")
        await wait_dead_letters(rt, 1)
        snap = await rt.events.refresh()
    processes = [s for s in recorder.spans() if s.name == "process x"]
    assert len(processes) == 2
    for span in processes:
        assert span.events[0].name == "timeout"
        assert span.attributes is not None
        assert span.attributes["agentcomm.error.code"] == "timeout"
    assert [e.name for e in processes[-1].events] == ["timeout", "dead_letter"]
    assert processes[-1].events[-1].attributes["agentcomm.dead_letter.reason"] == "timeout"
    assert (snap.subscriptions[0].timeouts, snap.topic("x").timeouts) == (2, 2)
    assert sorted((x.subject, x.value) for x in alerts) == [("a__stuck", 2.0), ("x", 2.0)]


async def test_shutdown_reports_handlers_cut_short(caplog: pytest.LogCaptureFixture) -> None:
    started = asyncio.Event()
    a = Agent("a")

    @a.on("x", handler_timeout=None)
    async def forever() -> None:
        started.set()
        await asyncio.Event().wait()

    with caplog.at_level(logging.WARNING, logger="agentcomm"):
        async with Runtime(agents=[a], drain_timeout=0.05) as rt:
            await rt.agent("p").publish("x")
            async with asyncio.timeout(10):
                await started.wait()
    assert any("1 handlers cut short" in r.getMessage() for r in caplog.records)


# -- restarts ------------------------------------------------------------------------------
class _Broken(LogConsumer):
    """A consumer whose fetch always raises (a bug in an engine)."""

    __slots__ = ("_inner", "name")

    def __init__(self, inner: LogConsumer) -> None:
        self._inner = inner
        self.name = inner.name

    async def fetch(self, max_messages: int, timeout: float) -> list[Any]:
        raise RuntimeError("broken engine")

    async def info(self) -> Any:
        return await self._inner.info()

    async def close(self) -> None:
        await self._inner.close()


async def test_restarts_back_off_and_stopping_does_not_wait_for_the_backoff(
    caplog: pytest.LogCaptureFixture,
) -> None:
    t = MemoryTransport()
    real = t.open_consumer

    async def open_broken(stream: str, config: ConsumerConfig) -> LogConsumer:
        return _Broken(await real(stream, config))

    t.open_consumer = open_broken  # type: ignore[method-assign]
    a = Agent("a")

    @a.on("x")
    async def h() -> None: ...

    with caplog.at_level(logging.ERROR, logger="agentcomm"):
        async with Runtime(transport=t, agents=[a]) as rt:
            await rt.events.start()
            began = time.monotonic()
            await _until(lambda: rt.events.statistics().subscriptions[0].restarts >= 3)
            took = time.monotonic() - began
            sub = rt.events.statistics().subscriptions[0]
            assert rt.running
            stopping = time.monotonic()
        stopped = time.monotonic() - stopping
    assert took >= 0.1 + 0.2, "0.1 s, then 0.2 s between restarts"
    assert sub.last_error == "RuntimeError: broken engine"
    assert stopped < 2.0, "stop() wakes a subscription waiting to restart"
    logged = [r for r in caplog.records if "restart" in r.getMessage()]
    assert len(logged) >= 3
    assert all(r.exc_info is not None for r in logged), "each restart logs its traceback"


async def test_reopening_the_consumer_is_retried_until_it_works() -> None:
    t = MemoryTransport()
    real = t.open_consumer
    opened = [0]

    async def flaky(stream: str, config: ConsumerConfig) -> LogConsumer:
        opened[0] += 1
        if opened[0] == 1:
            return _Broken(await real(stream, config))  # first run: fetch fails
        if opened[0] == 2:
            raise TransportError("engine away")  # the first reopening fails
        return await real(stream, config)

    t.open_consumer = flaky  # type: ignore[method-assign]
    seen = Seen()
    a = Agent("a")

    @a.on("x")
    async def h(n: int) -> None:
        seen.add(n)

    async with Runtime(transport=t, agents=[a]) as rt:
        await rt.agent("p").publish("x", {"n": 1})
        await seen.count(1)
        sub = rt.events.statistics().subscriptions[0]
    assert (opened[0], sub.restarts) == (3, 1)


async def test_the_monitor_logs_one_line_per_outage(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 15: a broker outage logged a chained traceback at every refresh."""
    from agentcomm import PubSub

    rt = Runtime()
    bus = PubSub.install(rt, monitor_interval=0.01)
    calls = 0
    back = asyncio.Event()

    async def refresh() -> None:  # 20 failed refreshes (a broker away), then fine
        nonlocal calls
        calls += 1
        if calls <= 20:
            raise TransportError("stream_info: JetStream did not answer in time")
        if calls >= 23:
            back.set()

    monkeypatch.setattr(bus, "refresh", refresh)
    with caplog.at_level(logging.INFO, logger="agentcomm"):
        async with rt:
            await rt.agent("shop").publish("orders.new", 1)  # the bus starts its monitor
            await asyncio.wait_for(back.wait(), 10)
    lines = [r for r in caplog.records if "pub/sub monitor" in r.getMessage()]
    assert [r.levelname for r in lines] == ["WARNING", "INFO"]  # down once, back once
    assert not lines[0].exc_info  # one line: no traceback for the engine's failure
    assert "JetStream did not answer in time" in lines[0].getMessage()
    assert rt.statistics().errors["pubsub-monitor"].count >= 20
