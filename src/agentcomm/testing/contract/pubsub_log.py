"""Contract: pub/sub's durable log (replay, start, dedupe, retention), dead letters, flow, metrics.

The second half of the pub/sub contract suite (routing, order and retries are in
``contract.pubsub``); every test uses only the public API and runs on every transport.
"""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from agentcomm.api import Agent, Context
from agentcomm.core.errors import ConfigurationError, RateLimited, Reject
from agentcomm.core.flow import RateLimit, Retention, RetryPolicy
from agentcomm.pubsub.bus import Alert, PubSub
from agentcomm.testing.contract.pubsub import DEADLINE, FAST, Seen, _dead_letters
from agentcomm.testing.fixtures import MakeRuntime

__all__ = [
    "test_backpressure_slow_subscriber_builds_lag_not_memory",
    "test_context_publish_carries_causation",
    "test_dead_letter_queue_is_bounded_dropping_the_oldest",
    "test_dead_letters_list_show_redrive",
    "test_dedupe_by_message_id",
    "test_detach_stops_the_agents_subscriptions",
    "test_events_without_subscriber_are_kept_and_replayable",
    "test_publish_rate_wait_never_outlasts_the_ttl",
    "test_rate_limits_wait_or_raise",
    "test_replay_in_two_runtimes_at_once_each_gets_every_event",
    "test_replay_reaches_one_subscriber_without_republishing",
    "test_replay_returns_while_events_are_published_meanwhile",
    "test_retention_bounds_the_log",
    "test_start_from_sequence_and_time",
    "test_statistics_and_alerts",
]


async def test_events_without_subscriber_are_kept_and_replayable(
    make_runtime: MakeRuntime,
) -> None:
    seen = Seen()
    async with make_runtime() as rt:
        p = rt.agent("p")
        for i in range(3):
            await p.publish("alerts.disk", {"id": i})
        snap = await rt.events.refresh()
        assert snap.topic("alerts.disk").unrouted == 3
        assert snap.dead_letters == 0, "no 'no subscribers' dead letters"
        late = Agent("late")

        @late.on("alerts.>", start="all")
        async def on_alert(id: int) -> None:
            seen.add(id)

        await rt.attach(late)
        await rt.events.start()
        await seen.count(3)
        await p.publish("alerts.disk", {"id": 3})
        await seen.count(4)
        snap = await rt.events.refresh()
    assert seen.items == [0, 1, 2, 3]
    assert snap.topic("alerts.disk").unrouted == 3


async def test_start_from_sequence_and_time(make_runtime: MakeRuntime) -> None:
    seen = Seen()
    async with make_runtime() as rt:
        p = rt.agent("p")
        seqs = [await p.publish("log.line", {"id": i}) for i in range(3)]
        middle = dt.datetime.now(dt.UTC)
        for _ in range(1000):  # let the wall clock move past `middle` (bounded)
            if dt.datetime.now(dt.UTC) > middle:
                break
            await asyncio.sleep(0.001)
        seqs += [await p.publish("log.line", {"id": i}) for i in range(3, 6)]
        by_seq, by_time = Agent("by_seq"), Agent("by_time")

        @by_seq.on("log.line", start=seqs[4])
        async def from_seq(id: int) -> None:
            seen.add(("seq", id))

        @by_time.on("log.line", start=middle)
        async def from_time(id: int) -> None:
            seen.add(("time", id))

        for agent in (by_seq, by_time):
            await rt.attach(agent)
        await rt.events.start()
        await seen.count(5)
    assert sorted(i for k, i in seen.items if k == "seq") == [4, 5]
    assert sorted(i for k, i in seen.items if k == "time") == [3, 4, 5]
    with pytest.raises(ConfigurationError):
        Agent("x").on("t", start=dt.datetime(2020, 1, 1))  # naive datetime
    with pytest.raises(ConfigurationError):
        Agent("x").on("t", start=0)


async def test_replay_reaches_one_subscriber_without_republishing(
    make_runtime: MakeRuntime,
) -> None:
    seen = Seen()
    auditor, other = Agent("auditor"), Agent("other")

    @auditor.on("orders.*")
    async def audit(id: int) -> None:
        seen.add(("auditor", id))

    @other.on("orders.*")
    async def count(id: int) -> None:
        seen.add(("other", id))

    async with make_runtime(agents=[auditor, other]) as rt:
        p = rt.agent("p")
        for i in range(4):
            await p.publish("orders.created", {"id": i})
        await seen.count(8)
        before = await rt.events.refresh()
        handled = await rt.events.replay("auditor", start=3)
        after = await rt.events.refresh()
    assert handled == 2
    assert sorted(i for k, i in seen.items if k == "auditor") == [0, 1, 2, 2, 3, 3]
    assert sorted(i for k, i in seen.items if k == "other") == [0, 1, 2, 3]
    assert after.last_sequence == before.last_sequence
    assert after.published == before.published


async def test_replay_returns_while_events_are_published_meanwhile(
    make_runtime: MakeRuntime,
) -> None:
    seen = Seen()
    replaying = [False]
    auditor = Agent("auditor")

    async with make_runtime(agents=[auditor]) as rt:
        p = rt.agent("p")

        @auditor.on("orders.*", start="all")
        async def audit(id: int) -> None:
            seen.add(id)
            if replaying[0] and id < 100:  # an event published while the replay runs
                await p.publish("orders.created", {"id": 100 + id})

        for i in range(3):
            await p.publish("orders.created", {"id": i})
        await seen.count(3)
        replaying[0] = True
        async with asyncio.timeout(DEADLINE):
            handled = await rt.events.replay("auditor")
        await seen.count(9)  # the three new ones reach the subscription itself
    assert handled == 3
    assert sorted(seen.items) == [0, 0, 1, 1, 2, 2, 100, 101, 102]


async def test_replay_in_two_runtimes_at_once_each_gets_every_event(
    make_runtime: MakeRuntime,
) -> None:
    seen = Seen()

    def auditor(where: int) -> Agent:
        a = Agent("auditor")

        @a.on("orders.*", start="all")
        async def audit(id: int) -> None:
            seen.add((where, id))

        return a

    async with (
        make_runtime(agents=[auditor(1)]) as rt1,
        make_runtime(agents=[auditor(2)]) as rt2,
    ):
        p = rt1.agent("p")
        for i in range(20):
            await p.publish("orders.created", {"id": i})
        await seen.count(20)  # one engine: the two share the subscription's consumer
        live = list(seen.items)
        stored = [(await rt.events.refresh()).events_stored for rt in (rt1, rt2)]
        async with asyncio.timeout(DEADLINE):
            handled = await asyncio.gather(
                rt1.events.replay("auditor"), rt2.events.replay("auditor")
            )
        await seen.count(60)
    # live: each event reached one of the two (a consumer group), exactly once
    assert sorted(i for _, i in live) == list(range(20))
    assert stored == [20, 20]
    # each replay has a consumer of its own and runs its own runtime's handler
    assert list(handled) == [20, 20]
    replayed = seen.items[len(live) :]
    for where in (1, 2):
        assert sorted(i for w, i in replayed if w == where) == list(range(20))


async def test_detach_stops_the_agents_subscriptions(make_runtime: MakeRuntime) -> None:
    seen = Seen()
    audit, witness = Agent("audit"), Agent("witness")

    @audit.on("orders.*")
    async def record(id: int) -> None:
        seen.add(("audit", id))

    @witness.on("orders.*")
    async def watch(id: int) -> None:
        seen.add(("witness", id))

    async with make_runtime(agents=[audit, witness]) as rt:
        p = rt.agent("p")
        await p.publish("orders.created", {"id": 1})
        await seen.count(2)
        await rt.detach("audit")
        rt.agent("other")  # the agent count is back where it was
        assert [s.agent for s in rt.events.statistics().subscriptions] == ["witness"]
        await p.publish("orders.created", {"id": 2})
        await seen.count(3)
        assert ("audit", 2) not in seen.items  # its handler stopped with detach
        await rt.attach(audit)  # back again: its durable consumer kept the event
        await seen.count(4)
        late = rt.agent("late")

        @late.on("orders.*")  # declared while running: starts without another call
        async def late_watch(id: int) -> None:
            seen.add(("late", id))

        await p.publish("orders.created", {"id": 3})
        await seen.count(7)
    assert sorted(seen.items) == [
        ("audit", 1),
        ("audit", 2),
        ("audit", 3),
        ("late", 3),
        ("witness", 1),
        ("witness", 2),
        ("witness", 3),
    ]


async def test_dedupe_by_message_id(make_runtime: MakeRuntime) -> None:
    seen = Seen()
    a = Agent("a")

    @a.on("payments")
    async def pay(id: int) -> None:
        seen.add(id)

    async with make_runtime(agents=[a]) as rt:
        p = rt.agent("p")
        s1 = await p.publish("payments", {"id": 1}, msg_id="pay-1")
        s2 = await p.publish("payments", {"id": 1}, msg_id="pay-1")
        s3 = await p.publish("payments", {"id": 2}, msg_id="pay-2")
        await seen.count(2)
        await p.publish("payments", {"id": 3})
        await seen.count(3)
        snap = await rt.events.refresh()
    assert s1 == s2
    assert s3 > s1
    assert seen.items == [1, 2, 3]
    assert snap.events_stored == 3
    assert (snap.published, snap.duplicates) == (3, 1)  # the duplicate is counted apart
    t = snap.topic("payments")
    assert (t.published, t.duplicates) == (3, 1)


async def test_retention_bounds_the_log(make_runtime: MakeRuntime) -> None:
    async with make_runtime() as rt:
        PubSub.install(rt, retention=Retention(max_events=10, max_dead_letters=5))
        p = rt.agent("p")
        for i in range(50):
            await p.publish("metrics.cpu", {"i": i})
        snap = await rt.events.refresh()
        assert (snap.events_stored, snap.last_sequence, snap.first_sequence) == (10, 50, 41)
        late = Agent("late")

        seen = Seen()

        @late.on("metrics.*", start="all")
        async def read(i: int) -> None:
            seen.add(i)

        await rt.attach(late)
        await rt.events.start()
        await seen.count(10)
    assert seen.items == list(range(40, 50))
    with pytest.raises(ConfigurationError):
        Retention(max_events=0)


async def test_dead_letters_list_show_redrive(make_runtime: MakeRuntime) -> None:
    seen = Seen()
    broken = [True]
    a = Agent("a")

    @a.on("invoices", retry=FAST)
    async def invoice(id: int) -> None:
        if broken[0]:
            raise RuntimeError("printer offline")
        seen.add(id)

    async with make_runtime(agents=[a]) as rt:
        p = rt.agent("p")
        for i in range(2):
            await p.publish("invoices", {"id": i})
        dls = await _dead_letters(rt, 2)
        one = await rt.events.dead_letter(dls[0].sequence)
        assert one == dls[0]
        assert await rt.events.dead_letters(subscription="nobody") == []
        broken[0] = False
        assert await rt.events.redrive(dls[0].sequence) is True
        assert seen.items == [0]
        assert await rt.events.dead_letter(dls[0].sequence) is None
        broken[0] = True
        assert await rt.events.redrive(dls[1].sequence) is False  # fails again: replaced
        left = await rt.events.dead_letters()
        with pytest.raises(ConfigurationError):
            await rt.events.redrive(dls[0].sequence)
    assert [d.event.sequence for d in left] == [dls[1].event.sequence]
    assert left[0].sequence != dls[1].sequence


async def test_rate_limits_wait_or_raise(make_runtime: MakeRuntime) -> None:
    async with make_runtime() as rt:
        PubSub.install(
            rt,
            publisher_limit=RateLimit(200.0, burst=3),
            topic_limits={"sms.*": RateLimit(100.0, burst=1)},
        )
        p = rt.agent("p")
        for _ in range(3):
            await p.publish("mail.out", {}, wait=False)
        with pytest.raises(RateLimited) as info:
            await p.publish("mail.out", {}, wait=False)
        assert info.value.retry_after > 0
        await p.publish("mail.out", {})  # waits for a token instead
        q = rt.agent("q")
        await q.publish("sms.out", {}, wait=False)
        with pytest.raises(RateLimited):
            await q.publish("sms.out", {}, wait=False)
        await q.publish("sms.out", {})
        snap = await rt.events.refresh()
    assert snap.published == 6


async def test_publish_rate_wait_never_outlasts_the_ttl(make_runtime: MakeRuntime) -> None:
    async with make_runtime() as rt:
        PubSub.install(rt, publisher_limit=RateLimit(0.5, burst=1))
        p = rt.agent("p")
        await p.publish("mail.out", {})
        with pytest.raises(RateLimited) as info:  # the next token comes in 2 s, past the ttl
            await p.publish("mail.out", {}, ttl=0.05)
        assert info.value.retry_after > 0.05
        snap = await rt.events.refresh()
    assert snap.published == 1


async def test_backpressure_slow_subscriber_builds_lag_not_memory(
    make_runtime: MakeRuntime,
) -> None:
    fast_seen, slow_seen = Seen(), Seen()
    gate = asyncio.Event()
    fast, slow = Agent("fast"), Agent("slow")

    @fast.on("feed")
    async def quick(i: int) -> None:
        fast_seen.add(i)

    @slow.on("feed", concurrency=2, max_in_flight=4)
    async def crawl(i: int) -> None:
        await gate.wait()
        slow_seen.add(i)

    async with make_runtime(agents=[fast, slow]) as rt:
        p = rt.agent("p")
        async with asyncio.timeout(DEADLINE):  # the publisher is never held up
            for i in range(100):
                await p.publish("feed", {"i": i})
        await fast_seen.count(100)
        snap = await rt.events.refresh()
        s = snap.subscription("slow__crawl")
        assert s.in_flight <= 4
        assert s.running <= 2
        assert s.lag >= 90
        gate.set()
        await slow_seen.count(100)
        snap = await rt.events.refresh()
    assert sorted(slow_seen.items) == list(range(100))
    assert snap.subscription("slow__crawl").lag == 0


async def test_statistics_and_alerts(make_runtime: MakeRuntime) -> None:
    seen = Seen()
    alerts: list[Alert] = []
    a = Agent("a")

    @a.on("orders.*", retry=RetryPolicy(max_attempts=1))
    async def handle(id: int) -> None:
        if id < 0:
            raise ValueError("negative")
        seen.add(id)

    async with make_runtime(agents=[a]) as rt:
        rt.events.alert("dead_lettered", above=0, callback=alerts.append)
        rt.events.alert("published", above=4, callback=alerts.append, subject="orders.new")
        with pytest.raises(ConfigurationError):
            rt.events.alert("no_such_metric", above=1, callback=alerts.append)
        p = rt.agent("p")
        for i in range(5):
            await p.publish("orders.new", {"id": i})
        await p.publish("orders.bad", {"id": -1})
        await seen.count(5)
        await _dead_letters(rt, 1)
        snap = await rt.events.refresh()
    t = snap.topic("orders.new")
    assert (t.published, t.delivered, t.acked, t.unrouted) == (5, 5, 5, 0)
    s = snap.subscription("a__handle")
    assert (s.delivered, s.acked, s.dead_lettered, s.in_flight, s.lag) == (6, 5, 1, 0, 0)
    assert snap.published == 6
    assert snap.dead_letters == 1
    with pytest.raises(AttributeError):
        snap.published = 0  # type: ignore[misc]
    assert sorted((x.metric, x.subject) for x in alerts) == [
        ("dead_lettered", "a__handle"),
        ("dead_lettered", "orders.bad"),
        ("published", "orders.new"),
    ]


async def test_context_publish_carries_causation(make_runtime: MakeRuntime) -> None:
    seen = Seen()
    shipper, notifier = Agent("shipper"), Agent("notifier")

    @shipper.on("orders.paid")
    async def ship(id: int, ctx: Context) -> None:
        await ctx.publish("orders.shipped", {"id": id}, key=str(id))

    @notifier.on("orders.shipped")
    async def tell(id: int, ctx: Context) -> None:
        seen.add((id, ctx.envelope.causation_id, ctx.envelope.key, ctx.sender))

    async with make_runtime(agents=[shipper, notifier]) as rt:
        await rt.agent("p").publish("orders.paid", {"id": 9}, msg_id="paid-9")
        await seen.count(1)
    assert seen.items == [(9, "paid-9", "9", "shipper")]


async def test_dead_letter_queue_is_bounded_dropping_the_oldest(make_runtime: MakeRuntime) -> None:
    a = Agent("a")

    @a.on("bad")
    async def refuse(id: int) -> None:
        raise Reject(f"no {id}")

    rt = make_runtime(agents=[a])
    PubSub.install(rt, retention=Retention(max_dead_letters=2))  # before it starts
    async with rt:
        p = rt.agent("p")
        for i in range(4):
            await p.publish("bad", {"id": i})
        # the fourth dead letter is #4 of the queue (the first two were dropped since)
        await rt.events.wait_dead_letter(start=4, timeout=DEADLINE)
        snap = await rt.events.refresh()
        dls = await rt.events.dead_letters()
    assert snap.subscription("a__refuse").dead_lettered == 4
    assert [d.last_error for d in dls] == ["no 2", "no 3"]
    assert (snap.dead_letters, snap.dead_letters_dropped) == (2, 2)
