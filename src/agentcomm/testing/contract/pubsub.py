"""Contract: pub/sub events (topics, groups, order, retries, dead letters, log, flow, metrics).

Every test takes ``make_runtime`` and uses only the public API, so it runs unchanged
on every transport. Waits are on events with deadlines; backoffs are milliseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

import msgspec
import pytest

from agentcomm.api import Agent, Context, Runtime
from agentcomm.core.errors import ConfigurationError, Reject, Retry
from agentcomm.core.flow import RetryPolicy
from agentcomm.testing.fixtures import MakeRuntime
from agentcomm.testing.waits import wait_dead_letters

__all__ = [
    "test_consumer_group_shares_events",
    "test_expired_and_invalid_events_are_dead_lettered",
    "test_failed_handler_is_retried_then_succeeds",
    "test_fan_out_every_subscriber_gets_every_event",
    "test_keyed_retry_blocks_only_its_key",
    "test_poison_event_is_dead_lettered_and_others_flow",
    "test_retry_and_reject_signals",
    "test_same_key_in_order_different_keys_in_parallel",
    "test_wait_dead_letter_bad_arguments",
    "test_wait_dead_letter_finds_stored_then_waits_for_a_match",
    "test_wildcards_follow_nats_rules",
]

FAST = RetryPolicy(max_attempts=3, backoff=0.005, max_backoff=0.02, jitter=0.0)
DEADLINE = 10.0


class Order(msgspec.Struct, frozen=True):
    id: int
    customer: str = "c"


class Seen:
    """Records what handlers saw; ``wait`` returns once a condition holds (with a deadline)."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self._changed = asyncio.Event()

    def add(self, item: Any) -> None:
        self.items.append(item)
        self._changed.set()

    async def wait(self, cond: Callable[[list[Any]], bool], timeout: float = DEADLINE) -> None:
        async with asyncio.timeout(timeout):
            while not cond(self.items):
                self._changed.clear()
                await self._changed.wait()

    async def count(self, n: int, timeout: float = DEADLINE) -> list[Any]:
        await self.wait(lambda items: len(items) >= n, timeout)
        return self.items


async def _dead_letters(rt: Runtime, n: int, *, subscription: str | None = None) -> list[Any]:
    return await wait_dead_letters(rt, n, subscription=subscription, timeout=DEADLINE)


async def test_fan_out_every_subscriber_gets_every_event(make_runtime: MakeRuntime) -> None:
    seen = Seen()
    billing, audit = Agent("billing"), Agent("audit")

    @billing.on("orders.created")
    async def charge(order: Order, ctx: Context) -> None:
        env = ctx.envelope
        seen.add(("billing", order.id, env.sequence, env.kind, env.topic, ctx.sender))

    @audit.on("orders.created")
    def record(id: int, customer: str) -> None:  # sync handlers and plain arguments work too
        seen.add(("audit", id, None, None, None, None))

    async with make_runtime(agents=[billing, audit]) as rt:
        shop = rt.agent("shop")
        seqs = [await shop.publish("orders.created", Order(id=i)) for i in range(5)]
        assert seqs == sorted(seqs)
        assert len(set(seqs)) == 5
        await seen.count(10)
    got = [s for s in seen.items if s[0] == "billing"]
    assert [s[1] for s in got] == [0, 1, 2, 3, 4]
    assert [s[2] for s in got] == seqs
    assert {s[3:] for s in got} == {("event", "orders.created", "shop")}
    assert sorted(s[1] for s in seen.items if s[0] == "audit") == [0, 1, 2, 3, 4]


async def test_wildcards_follow_nats_rules(make_runtime: MakeRuntime) -> None:
    seen = Seen()
    a = Agent("a")

    @a.on("orders.*")
    async def one(id: int) -> None:
        seen.add(("one", id))

    @a.on("orders.>")
    async def rest(id: int) -> None:
        seen.add(("rest", id))

    @a.on("*.created")
    async def created(id: int) -> None:
        seen.add(("created", id))

    for bad in ["", "orders.>.x", "orders..x", "or*ders", "orders.", "a b", ">.x"]:
        with pytest.raises(ConfigurationError):
            a.on(bad)
    async with make_runtime(agents=[a]) as rt:
        p = rt.agent("p")
        await p.publish("orders.created", {"id": 1})  # one, rest, created
        await p.publish("orders.eu.created", {"id": 2})  # rest
        await p.publish("users.created", {"id": 3})  # created
        await p.publish("orders", {"id": 4})  # nobody
        for bad in ["orders.*", "orders.>", "", "a..b", "x y"]:
            with pytest.raises(ConfigurationError):
                await p.publish(bad, {"id": 0})
        await seen.count(5)
        await p.publish("orders.done", {"id": 5})  # one, rest: a marker after the others
        await seen.count(7)
    assert sorted(seen.items) == sorted(
        [
            ("one", 1),
            ("rest", 1),
            ("created", 1),
            ("rest", 2),
            ("created", 3),
            ("one", 5),
            ("rest", 5),
        ]
    )


async def test_consumer_group_shares_events(make_runtime: MakeRuntime) -> None:
    seen = Seen()
    members = [Agent(f"worker{i}") for i in range(2)]
    for w in members:

        @w.on("jobs.*", group="workers", concurrency=2)
        async def work(id: int, ctx: Context) -> None:
            seen.add((ctx.agent.name, id))

    loner = Agent("loner")

    @loner.on("jobs.*")
    async def watch(id: int) -> None:
        seen.add(("loner", id))

    async with make_runtime(agents=[*members, loner]) as rt:
        p = rt.agent("p")
        for i in range(40):
            await p.publish("jobs.new", {"id": i})
        await seen.count(80)
        snap = await rt.events.refresh()
    group_ids = sorted(i for who, i in seen.items if who != "loner")
    assert group_ids == list(range(40)), "each event handled once by the group"
    assert sorted(i for who, i in seen.items if who == "loner") == list(range(40))
    assert {s.group for s in snap.subscriptions} == {"workers", None}


async def test_same_key_in_order_different_keys_in_parallel(make_runtime: MakeRuntime) -> None:
    seen = Seen()
    running: set[str] = set()
    clashes: list[tuple[str, int]] = []
    overlap = asyncio.Event()
    unkeyed_done = asyncio.Event()
    a = Agent("a")

    @a.on("ticks", concurrency=5)
    async def tick(n: int, ctx: Context) -> None:
        key = ctx.envelope.key or ""
        if key in running:
            clashes.append((key, n))  # two events of one key at once
        running.add(key)
        if len(running) >= 2:
            overlap.set()
        # The first event of each key waits until the unkeyed event ran: without
        # per-key order, the next event of that key would start on the free worker
        # meanwhile; and the unkeyed event must not queue behind the keyed ones.
        if n == 0 and key:
            async with asyncio.timeout(DEADLINE):
                await unkeyed_done.wait()
        else:
            await asyncio.sleep(0.001)
        running.discard(key)
        seen.add((key, n))
        if n == 99:
            unkeyed_done.set()

    async with make_runtime(agents=[a]) as rt:
        p = rt.agent("p")
        for n in range(10):
            for k in ("k0", "k1", "k2", "k3"):
                await p.publish("ticks", {"n": n}, key=k)
        await p.publish("ticks", {"n": 99})  # no key: runs alongside the keyed ones
        await seen.count(41)
        async with asyncio.timeout(DEADLINE):
            await overlap.wait()
    assert clashes == []
    for k in ("k0", "k1", "k2", "k3"):
        assert [n for key, n in seen.items if key == k] == list(range(10))
    assert seen.items.index(("", 99)) < seen.items.index(("k0", 9))


async def test_failed_handler_is_retried_then_succeeds(make_runtime: MakeRuntime) -> None:
    seen = Seen()
    attempts: list[float] = []
    a = Agent("a")

    @a.on("flaky", retry=RetryPolicy(max_attempts=4, backoff=0.01, jitter=0.0))
    async def flaky(id: int) -> None:
        attempts.append(time.monotonic())
        if len(attempts) < 3:
            raise RuntimeError("not yet")
        seen.add(id)

    async with make_runtime(agents=[a]) as rt:
        await rt.agent("p").publish("flaky", {"id": 7})
        await seen.count(1)
        snap = await rt.events.refresh()
    assert len(attempts) == 3
    # Exponential backoff: 10 ms after the first failure, 20 ms after the second.
    assert attempts[1] - attempts[0] >= 0.009
    assert attempts[2] - attempts[1] >= 0.019
    sub = snap.subscription("a__flaky")
    assert (sub.delivered, sub.retried, sub.acked, sub.dead_lettered) == (3, 2, 1, 0)
    assert snap.dead_letters == 0


async def test_retry_and_reject_signals(make_runtime: MakeRuntime) -> None:
    seen = Seen()
    a = Agent("a")

    @a.on("signals.*", retry=RetryPolicy(max_attempts=5, backoff=5.0))
    async def handle(id: int, ctx: Context) -> None:
        if ctx.envelope.topic == "signals.reject":
            raise Reject("no customer id")
        seen.add(id)
        if len(seen.items) == 1:
            raise Retry(delay=0.01)  # far shorter than the policy's 5 s backoff

    async with make_runtime(agents=[a]) as rt:
        p = rt.agent("p")
        await p.publish("signals.retry", {"id": 1})
        await seen.count(2)
        await p.publish("signals.reject", {"id": 2})
        (dl,) = await _dead_letters(rt, 1)
    assert seen.items == [1, 1]
    assert (dl.reason, dl.attempts, dl.last_error, dl.topic) == (
        "rejected",
        1,
        "no customer id",
        "signals.reject",
    )


async def test_poison_event_is_dead_lettered_and_others_flow(make_runtime: MakeRuntime) -> None:
    seen = Seen()
    a = Agent("a")

    @a.on("work", retry=FAST)
    async def work(id: int) -> None:
        if id == 0:
            raise ValueError("poison")
        seen.add(id)

    async with make_runtime(agents=[a]) as rt:
        p = rt.agent("p")
        first = await p.publish("work", {"id": 0})
        for i in range(1, 21):
            await p.publish("work", {"id": i})
        await seen.count(20)
        (dl,) = await _dead_letters(rt, 1, subscription="a__work")
        snap = await rt.events.refresh()
    assert sorted(seen.items) == list(range(1, 21))
    assert (dl.reason, dl.attempts, dl.agent, dl.subscription) == (
        "max_attempts",
        3,
        "a",
        "a__work",
    )
    assert dl.last_error == "ValueError: poison"
    assert dl.event.sequence == first
    assert dl.event.topic == "work"
    assert msgspec.json.decode(dl.event.payload) == {"id": 0}
    assert snap.subscription("a__work").dead_lettered == 1
    assert snap.topic("work").dead_lettered == 1


async def test_keyed_retry_blocks_only_its_key(make_runtime: MakeRuntime) -> None:
    seen = Seen()
    failures = [0]
    a = Agent("a")

    @a.on("acct", concurrency=4, retry=RetryPolicy(max_attempts=5, backoff=0.05, jitter=0))
    async def apply(n: int, ctx: Context) -> None:
        key = ctx.envelope.key
        if key == "A" and n == 0 and failures[0] < 2:
            failures[0] += 1
            raise RuntimeError("database busy")
        seen.add((key, n))

    async with make_runtime(agents=[a]) as rt:
        p = rt.agent("p")
        for n in range(5):
            await p.publish("acct", {"n": n}, key="A")
            await p.publish("acct", {"n": n}, key="B")
        await seen.count(10)
    order = seen.items
    assert [n for k, n in order if k == "A"] == [0, 1, 2, 3, 4]
    assert [n for k, n in order if k == "B"] == [0, 1, 2, 3, 4]
    # B never waited for A's retries: all of B was handled before A's head succeeded.
    assert order.index(("B", 4)) < order.index(("A", 0))


async def test_expired_and_invalid_events_are_dead_lettered(make_runtime: MakeRuntime) -> None:
    seen = Seen()
    a = Agent("a")

    @a.on("orders.*")
    async def handle(order: Order) -> None:
        seen.add(order.id)

    async with make_runtime(agents=[a]) as rt:
        p = rt.agent("p")
        await p.publish("orders.old", Order(id=1), ttl=1e-6)
        await p.publish("orders.bad", {"id": "not a number"})
        await p.publish("orders.ok", Order(id=3), ttl=60.0)
        await seen.count(1)
        dls = await _dead_letters(rt, 2)
        snap = await rt.events.refresh()
    assert seen.items == [3]
    assert sorted((d.reason, d.topic, d.attempts) for d in dls) == [
        ("expired", "orders.old", 1),
        ("invalid", "orders.bad", 1),
    ]
    assert snap.subscription("a__handle").expired == 1
    assert snap.topic("orders.old").expired == 1


async def test_wait_dead_letter_finds_stored_then_waits_for_a_match(
    make_runtime: MakeRuntime,
) -> None:
    a = Agent("a")

    @a.on("bad.*")
    async def refuse(id: int) -> None:
        raise Reject(f"no {id}")

    async with make_runtime(agents=[a]) as rt:
        p = rt.agent("p")
        await p.publish("bad.a", {"id": 1})
        await asyncio.sleep(0)  # it may or may not be stored before the wait: both work
        first = await rt.events.wait_dead_letter(topic="bad.*", timeout=DEADLINE)
        assert (first.topic, first.reason, first.last_error) == ("bad.a", "rejected", "no 1")
        again = await rt.events.wait_dead_letter(subscription="a__refuse", timeout=DEADLINE)
        assert again.sequence == first.sequence, "the first matching one, not only new ones"
        # Wait first, then publish: the wait wakes for "bad.b" and skips "bad.c" before it.
        waiter = asyncio.ensure_future(
            rt.events.wait_dead_letter(topic="bad.b", start=first.sequence + 1, timeout=DEADLINE)
        )
        try:
            await asyncio.sleep(0.05)
            assert not waiter.done()
            await p.publish("bad.c", {"id": 3})
            await p.publish("bad.b", {"id": 2})
            got = await waiter
        finally:
            waiter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await waiter
        assert (got.topic, got.last_error) == ("bad.b", "no 2")
        # A waiter wakes with the statistics that go with its dead letter.
        assert rt.events.statistics().subscription("a__refuse").dead_lettered == 3
        loop = asyncio.get_running_loop()
        began = loop.time()
        with pytest.raises(TimeoutError, match="no dead letter of subscription 'a__refuse'"):
            await rt.events.wait_dead_letter(
                subscription="a__refuse", start=got.sequence + 1, timeout=0.2
            )
        assert 0.2 <= loop.time() - began < 5.0


async def test_wait_dead_letter_bad_arguments(make_runtime: MakeRuntime) -> None:
    async with make_runtime() as rt:
        with pytest.raises(ConfigurationError, match="timeout must be positive"):
            await rt.events.wait_dead_letter(timeout=0)
        with pytest.raises(ConfigurationError, match="start must be a sequence number"):
            await rt.events.wait_dead_letter(start=0)
        with pytest.raises(ConfigurationError):
            await rt.events.wait_dead_letter(topic="bad..topic")
