"""Pub/sub unit tests: topics, policies, restarts, shutdown.

The event log engine itself (ack, nak, term, ack_wait, retention, dedupe) is checked on
every engine by the engine contract suite (``tests/contract/test_engine_*.py``).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from agentcomm import Agent, ConfigurationError, RateLimited, RetryPolicy, Runtime
from agentcomm.api import Context
from agentcomm.core.flow import RateLimit, TokenBucket
from agentcomm.core.topics import check_pattern, check_topic, topic_matches
from agentcomm.transports.memory import MemoryTransport
from agentcomm.transports.streams import ConsumerConfig


@pytest.mark.parametrize(
    ("pattern", "topic", "expected"),
    [
        ("orders.*", "orders.created", True),
        ("orders.*", "orders", False),
        ("orders.*", "orders.eu.created", False),
        ("orders.>", "orders.eu.created", True),
        ("orders.>", "orders", False),
        ("*.created", "orders.created", True),
        ("*.*", "a.b", True),
        (">", "a.b.c", True),
        ("orders.created", "orders.created", True),
        ("orders.created", "orders.deleted", False),
    ],
)
def test_topic_matching(pattern: str, topic: str, expected: bool) -> None:
    assert topic_matches(pattern, topic) is expected


@pytest.mark.parametrize("bad", ["", ".", "a..b", "a.", ".a", "a b", "a.*", "a.>", "é"])
def test_invalid_topics(bad: str) -> None:
    with pytest.raises(ConfigurationError):
        check_topic(bad)


@pytest.mark.parametrize("bad", ["", "a..b", "a.>.b", ">.a", "a*", "*a.b", "a.b c", "x" * 300])
def test_invalid_patterns(bad: str) -> None:
    with pytest.raises(ConfigurationError):
        check_pattern(bad)


def test_retry_policy_backoff_is_exponential_and_capped() -> None:
    p = RetryPolicy(backoff=0.1, multiplier=2.0, max_backoff=0.5, jitter=0.0)
    assert [p.delay(n) for n in (1, 2, 3, 4, 5)] == [0.1, 0.2, 0.4, 0.5, 0.5]
    j = RetryPolicy(backoff=1.0, jitter=0.5)
    assert all(0.5 <= j.delay(1) <= 1.5 for _ in range(100))
    for bad in ({"max_attempts": 0}, {"jitter": 2.0}, {"backoff": -1.0}):
        with pytest.raises(ConfigurationError):
            RetryPolicy(**bad)  # type: ignore[arg-type]


async def test_token_bucket_raises_or_waits() -> None:
    bucket = TokenBucket(RateLimit(1000.0, burst=2))
    await bucket.take("x", wait=False)
    await bucket.take("x", wait=False)
    with pytest.raises(RateLimited):
        await bucket.take("x", wait=False)
    await bucket.take("x", wait=True)
    with pytest.raises(ConfigurationError):
        RateLimit(0.0)


def test_declaration_errors() -> None:
    a = Agent("a")

    @a.on("t")
    async def h(x: int) -> None: ...

    with pytest.raises(ConfigurationError, match="already has a subscription"):
        a.on("u")(h)
    with pytest.raises(ConfigurationError):
        a.on("t", group="bad group")
    with pytest.raises(ConfigurationError):
        a.on("t", concurrency=4, max_in_flight=2)
    with pytest.raises(ConfigurationError):
        a.on("t", start="yesterday")


async def test_group_members_must_share_a_pattern() -> None:
    a, b = Agent("a"), Agent("b")

    @a.on("x.*", group="g")
    async def one(v: int) -> None: ...

    @b.on("y.*", group="g")
    async def two(v: int) -> None: ...

    with pytest.raises(ConfigurationError, match="a group has one pattern"):
        async with Runtime(agents=[a, b]):  # pub/sub starts with the runtime
            pass


async def test_shutdown_leaves_unfinished_events_unacked_for_the_next_run() -> None:
    transport = MemoryTransport()
    done: list[tuple[int, int]] = []
    started, all_done = asyncio.Event(), asyncio.Event()

    def build(block: bool) -> Agent:
        a = Agent("a")

        @a.on("jobs", concurrency=1)
        async def job(n: int, ctx: Context) -> None:
            if block and n == 1:
                started.set()
                await asyncio.Event().wait()  # never finishes: cut short at shutdown
            done.append((n, ctx.envelope.sequence or 0))
            if len(done) == 3:
                all_done.set()

        return a

    async with Runtime(transport=transport, agents=[build(True)], drain_timeout=0.05) as rt:
        p = rt.agent("p")
        for n in range(3):
            await p.publish("jobs", {"n": n})
        async with asyncio.timeout(5):
            await started.wait()
    assert [n for n, _ in done] == [0]
    async with Runtime(transport=transport, agents=[build(False)]) as rt:
        await rt.events.start()
        async with asyncio.timeout(5):
            await all_done.wait()
    assert [n for n, _ in done] == [0, 1, 2], "event 1 redelivered, event 0 not again"


async def test_long_held_events_are_reported_in_progress() -> None:

    from agentcomm.pubsub.subscription import Subscription

    class Held:
        touched = 0

        async def in_progress(self) -> None:
            self.touched += 1

    none: Any = None
    sub = Subscription(
        none,
        none,
        none,
        pattern="x",
        durable="d",
        group=None,
        retry=RetryPolicy(),
        concurrency=1,
        max_in_flight=2,
    )
    old, gone = Held(), Held()
    sub._held[1] = old  # type: ignore[assignment]
    sub._held[2] = gone  # type: ignore[assignment]
    await sub.touch_held(10.0, 60.0)
    del sub._held[2]
    for _ in range(4):
        await sub.touch_held(10.0, 60.0)  # every 20 s held: in_progress
    assert (old.touched, gone.touched) == (2, 0)


def test_has_subscriptions() -> None:
    from agentcomm.pubsub.declare import has_subscriptions

    quiet, listening = Agent("quiet"), Agent("listening")

    @listening.on("t")
    async def h(x: int) -> None: ...

    assert has_subscriptions([quiet, listening])
    assert not has_subscriptions([quiet])


def test_rate_buckets_keep_an_active_bucket_and_drop_the_least_recently_used() -> None:
    from agentcomm.core.flow import RateBuckets

    limit = RateLimit(0.001, burst=1)  # a token per 1000 s: a reset would show
    buckets = RateBuckets(max_size=3)
    flooder = buckets.get("flooder", limit)
    assert flooder.try_take() == 0.0
    for n in range(10):  # others come and go; the flooder keeps sending
        buckets.get(f"other{n}", limit)
        assert buckets.get("flooder", limit) is flooder
        assert flooder.try_take() > 0.0  # still limited: never evicted and refilled
    assert len(buckets) == 3
    assert "other9" in buckets
    assert "other0" not in buckets
    with pytest.raises(ConfigurationError):
        RateBuckets(max_size=0)


async def test_subscription_whose_transport_closes_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from agentcomm.core.errors import TransportClosed
    from agentcomm.transports.streams import LogConsumer, LogMessage

    closed = asyncio.Event()

    class Closing(MemoryTransport):
        async def open_consumer(self, stream: str, config: ConsumerConfig) -> LogConsumer:
            inner = await super().open_consumer(stream, config)

            class Consumer(LogConsumer):
                async def fetch(self, max_messages: int, timeout: float) -> list[LogMessage]:
                    await closed.wait()
                    raise TransportClosed("connection closed under it")

                async def info(self) -> Any:
                    return await inner.info()

                async def close(self) -> None:
                    await inner.close()

            return Consumer()

    a = Agent("a")

    @a.on("x")
    async def h(n: int) -> None: ...

    async with Runtime(transport=Closing(), agents=[a]) as rt:
        assert rt.events.statistics().subscription("a__h").stopped is None
        closed.set()
        for _ in range(1000):  # bounded: until the pump saw it
            if rt.events.statistics().subscription("a__h").stopped is not None:
                break
            await asyncio.sleep(0.005)
        stopped = rt.events.statistics().subscription("a__h").stopped
    assert stopped is not None
    assert "connection closed under it" in stopped
    assert any(r.levelname == "ERROR" and "a__h" in r.getMessage() for r in caplog.records)
