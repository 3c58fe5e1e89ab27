"""Core (durable=False) pub/sub in one process: the options that need the log, groups,
detaching, handler failures and timeouts (counted, never retried)."""

from __future__ import annotations

import asyncio

import pytest

from agentcomm import Agent, ConfigurationError, RetryPolicy, Runtime
from agentcomm.testing.contract.engine_support import until
from agentcomm.testing.contract.pubsub_core import Seen


def test_options_that_need_the_log_are_refused() -> None:
    a = Agent("a")
    with pytest.raises(ConfigurationError, match="start= needs the event log"):
        a.on("x.*", durable=False, start="all")
    with pytest.raises(ConfigurationError, match="retry= needs the event log"):
        a.on("x.*", durable=False, retry=RetryPolicy(max_attempts=2))
    with pytest.raises(ConfigurationError, match="invalid topic pattern"):
        a.on("x.>.y", durable=False)


async def test_msg_id_is_refused_and_nothing_is_sent() -> None:
    async with Runtime() as rt:
        p = rt.agent("p")
        with pytest.raises(ConfigurationError, match="msg_id dedupes in the event log"):
            await p.publish("x.y", {}, msg_id="m-1", durable=False)
        with pytest.raises(ConfigurationError, match="invalid topic"):
            await p.publish("x.*", {}, durable=False)
        assert rt.events.statistics().core_published == 0


async def test_a_group_has_one_pattern() -> None:
    a, b = Agent("a"), Agent("b")

    @a.on("x.*", group="g", durable=False)
    async def one() -> None: ...

    @b.on("y.*", group="g", durable=False)
    async def two() -> None: ...

    with pytest.raises(ConfigurationError, match="a group has one pattern"):
        async with Runtime(agents=[a, b]):
            pass


async def test_failures_and_timeouts_are_counted_not_retried() -> None:
    seen = Seen()
    a = Agent("a")

    @a.on("x.*", durable=False, handler_timeout=0.05)
    async def h(n: int) -> None:
        seen.add(n)
        if n == 1:
            raise RuntimeError("boom")
        if n == 2:
            await asyncio.Event().wait()  # never returns: cut by handler_timeout

    async with Runtime(agents=[a]) as rt:
        p = rt.agent("p")
        for n in (1, 2, 3):
            await p.publish("x.y", {"n": n}, durable=False)
        await seen.wait(lambda items: len(items) >= 3)
        await until(lambda: rt.events.statistics().core_subscription("a__h").handled >= 1)
        s = rt.events.statistics().core_subscription("a__h")
        assert (s.failed, s.timeouts, s.handled, s.received) == (2, 1, 1, 3)
        assert seen.items == [1, 2, 3], "each event ran once: no retry"


async def test_detach_stops_the_subscription_and_a_late_subscriber_sees_only_new() -> None:
    seen = Seen()
    a = Agent("a")

    @a.on("x.*", durable=False)
    async def h(n: int) -> None:
        seen.add(n)

    async with Runtime() as rt:
        p = rt.agent("p")
        await p.publish("x.y", {"n": 0}, durable=False)  # nobody listens: gone
        await rt.attach(a)
        await rt.events.start()
        await p.publish("x.y", {"n": 1}, durable=False)
        await seen.wait(lambda items: len(items) >= 1)
        await rt.detach(a)
        assert rt.events.statistics().core_subscriptions == ()
        await p.publish("x.y", {"n": 2}, durable=False)
    assert seen.items == [1]
