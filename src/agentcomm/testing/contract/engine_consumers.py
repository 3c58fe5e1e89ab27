"""Engine contract: the event log's durable consumers, driven on the ``Transport`` itself.

Start positions (all, new, by sequence, by time: replay), ack / nak / nak with a
delay / term and delivery counts, ``ack_wait`` redelivery and ``in_progress``,
handles that close with unsettled messages, consumer groups (several handles, from
several users of the engine, on one durable consumer) and the shared
``max_ack_pending``, subject filters, consumer state and deletion.

Acknowledgements may reach a network engine a moment after ``ack()`` returns (NATS
sends them without waiting for a confirmation), so consumer state read right after
settling is awaited with ``until``.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from agentcomm.core.errors import ConfigurationError
from agentcomm.testing.contract.engine_support import (
    DEADLINE,
    event,
    fetch_n,
    started,
    until,
    wait_clock,
)
from agentcomm.testing.fixtures import MakeTransport
from agentcomm.transports.base import Transport
from agentcomm.transports.streams import ConsumerConfig, ConsumerInfo, LogConsumer, StreamConfig

__all__ = [
    "test_ack_nak_term_and_delivery_counts",
    "test_ack_wait_redelivers_what_was_not_settled",
    "test_a_closed_handle_hands_back_its_unsettled_messages",
    "test_a_consumer_group_shares_the_messages",
    "test_an_existing_consumer_keeps_its_position",
    "test_consumer_info_reports_lag_and_positions",
    "test_deleting_a_consumer_forgets_it",
    "test_fetch_waits_for_a_new_message",
    "test_filters_select_subjects",
    "test_in_progress_restarts_ack_wait",
    "test_max_ack_pending_bounds_all_handles_together",
    "test_nak_with_a_delay_redelivers_after_it",
    "test_replay_from_a_sequence_or_a_time",
    "test_start_all_or_new",
    "test_term_is_never_delivered_again",
]


async def _stream(t: Transport, count: int, topic: str = "x", **limits: int) -> None:
    await t.ensure_stream(StreamConfig(name="S", **limits))
    for n in range(count):
        await t.append("S", event(topic, n))


async def _nothing(c: LogConsumer, within: float) -> None:
    """Nothing is delivered for ``within`` seconds (fetch waits that long)."""
    got = await c.fetch(10, timeout=within)
    assert [m.sequence for m in got] == []


async def _info(c: LogConsumer, **want: int) -> ConsumerInfo:
    """The consumer's state once it shows ``want`` (acks may land a moment late)."""
    seen: list[ConsumerInfo] = []

    async def shows() -> bool:
        seen.append(info := await c.info())
        return all(getattr(info, k) == v for k, v in want.items())

    try:
        await until(shows, DEADLINE / 2, f"consumer info {want}")
    except TimeoutError:
        raise AssertionError(f"consumer info never showed {want}: last {seen[-1]}") from None
    return seen[-1]


async def test_ack_nak_term_and_delivery_counts(make_transport: MakeTransport) -> None:
    async with started(make_transport) as t:
        await _stream(t, 3, "a.b")
        cfg = ConsumerConfig(name="c", filter_subject="a.*", deliver="all", max_ack_pending=2)
        c = await t.open_consumer("S", cfg)
        first = await fetch_n(c, 2)
        assert [(m.sequence, m.num_delivered) for m in first] == [(1, 1), (2, 1)]
        assert first[0].envelope.sequence == 1
        await _nothing(c, 0.2)  # max_ack_pending holds the third back
        await first[0].ack()
        await first[1].nak()
        again = await fetch_n(c, 2)  # the redelivery, and room for one new
        assert sorted((m.sequence, m.num_delivered) for m in again) == [(2, 2), (3, 1)]
        by_seq = {m.sequence: m for m in again}
        await by_seq[2].term()
        await by_seq[2].ack()  # settling twice does nothing
        await by_seq[3].nak()
        (third,) = await fetch_n(c, 1)
        assert (third.sequence, third.num_delivered) == (3, 2)
        await _info(c, num_ack_pending=1, num_pending=0, delivered_seq=3)
        await third.ack()
        await _info(c, num_ack_pending=0, ack_floor=3)
        await _nothing(c, 0.2)
        await c.close()


async def test_nak_with_a_delay_redelivers_after_it(make_transport: MakeTransport) -> None:
    async with started(make_transport) as t:
        await _stream(t, 1)
        c = await t.open_consumer("S", ConsumerConfig(name="c", deliver="all"))
        (m,) = await fetch_n(c, 1)
        t0 = time.monotonic()
        await m.nak(delay=0.5)
        await _nothing(c, 0.2)  # not due yet
        (again,) = await fetch_n(c, 1)
        waited = time.monotonic() - t0
        assert (again.sequence, again.num_delivered) == (1, 2)
        assert waited >= 0.45, f"redelivered {waited:.3f} s after a nak of 0.5 s"
        await again.ack()
        await c.close()


async def test_term_is_never_delivered_again(make_transport: MakeTransport) -> None:
    async with started(make_transport) as t:
        await _stream(t, 2)
        c = await t.open_consumer("S", ConsumerConfig(name="c", deliver="all", ack_wait=0.3))
        first, second = await fetch_n(c, 2)
        await first.term()
        await second.ack()
        await _nothing(c, 0.8)  # well past ack_wait
        await _info(c, num_ack_pending=0, ack_floor=2)
        await c.close()


async def test_ack_wait_redelivers_what_was_not_settled(make_transport: MakeTransport) -> None:
    async with started(make_transport) as t:
        await _stream(t, 1)
        c = await t.open_consumer("S", ConsumerConfig(name="c", deliver="all", ack_wait=0.4))
        t0 = time.monotonic()
        await fetch_n(c, 1)  # and never settled
        (again,) = await fetch_n(c, 1)  # redelivered after ack_wait
        waited = time.monotonic() - t0
        assert (again.sequence, again.num_delivered) == (1, 2)
        assert waited >= 0.35, f"redelivered after {waited:.3f} s, ack_wait is 0.4 s"
        await _info(c, num_redelivered=1, num_ack_pending=1)  # out again, not yet settled
        await again.ack()
        await _info(c, num_redelivered=0, num_ack_pending=0)
        await _nothing(c, 0.6)
        await c.close()


async def test_in_progress_restarts_ack_wait(make_transport: MakeTransport) -> None:
    async with started(make_transport) as t:
        await _stream(t, 1)
        c = await t.open_consumer("S", ConsumerConfig(name="c", deliver="all", ack_wait=1.0))
        (m,) = await fetch_n(c, 1)
        t0 = time.monotonic()
        await wait_clock(0.5)
        await m.in_progress()  # due again 1.0 s from now, not 0.5 s
        await _nothing(c, 0.8)
        (again,) = await fetch_n(c, 1)
        assert again.num_delivered == 2
        assert time.monotonic() - t0 >= 1.3
        await again.ack()
        await c.close()


async def test_a_closed_handle_hands_back_its_unsettled_messages(
    make_transport: MakeTransport,
) -> None:
    async with started(make_transport) as t:
        await _stream(t, 3)
        cfg = ConsumerConfig(name="c", deliver="all", ack_wait=60.0)
        c = await t.open_consumer("S", cfg)
        one, _, _ = await fetch_n(c, 3)
        await one.ack()
        await c.close()
        await c.close()  # idempotent
        assert await c.fetch(1, timeout=0.05) == [], "a closed handle fetches nothing"
        c2 = await t.open_consumer("S", cfg)
        back = await fetch_n(c2, 2, timeout=DEADLINE / 2)  # long before ack_wait
        assert sorted((m.sequence, m.num_delivered) for m in back) == [(2, 2), (3, 2)]
        for m in back:
            await m.ack()
        await c2.close()


async def test_start_all_or_new(make_transport: MakeTransport) -> None:
    async with started(make_transport) as t:
        await _stream(t, 3)
        everything = await t.open_consumer("S", ConsumerConfig(name="all", deliver="all"))
        fresh = await t.open_consumer("S", ConsumerConfig(name="new", deliver="new"))
        await t.append("S", event("x", 3))
        assert [m.sequence for m in await fetch_n(everything, 4)] == [1, 2, 3, 4]
        assert [m.sequence for m in await fetch_n(fresh, 1)] == [4]
        await _nothing(fresh, 0.2)
        for c in (everything, fresh):
            await c.close()


async def test_replay_from_a_sequence_or_a_time(make_transport: MakeTransport) -> None:
    async with started(make_transport) as t:
        await _stream(t, 3, max_msgs=5)
        await wait_clock(0.05)
        middle = time.time()
        await wait_clock(0.05)
        for n in range(3, 8):  # 8 in all: 1-3 are dropped by max_msgs
            await t.append("S", event("x", n))
        cases = {
            "seq": ConsumerConfig(name="seq", deliver="by_start_sequence", opt_start_seq=6),
            "old": ConsumerConfig(name="old", deliver="by_start_sequence", opt_start_seq=1),
            "time": ConsumerConfig(name="time", deliver="by_start_time", opt_start_time=middle),
        }
        got = {}
        for key, cfg in cases.items():
            c = await t.open_consumer("S", cfg)
            want = {"seq": 3, "old": 5, "time": 5}[key]
            got[key] = [m.sequence for m in await fetch_n(c, want)]
            await _nothing(c, 0.1)
            await c.close()
    assert got["seq"] == [6, 7, 8]
    assert got["old"] == [4, 5, 6, 7, 8], "from the oldest retained when the start was dropped"
    assert got["time"] == [4, 5, 6, 7, 8], "every message stored after the time"


async def test_an_existing_consumer_keeps_its_position(make_transport: MakeTransport) -> None:
    async with started(make_transport) as t:
        await _stream(t, 4)
        c = await t.open_consumer("S", ConsumerConfig(name="c", deliver="all"))
        for m in await fetch_n(c, 2):
            await m.ack()
        await _info(c, ack_floor=2)
        await c.close()
        again = ConsumerConfig(name="c", deliver="all", max_ack_pending=1, ack_wait=5.0)
        c2 = await t.open_consumer("S", again)  # the start only applies at creation
        (m3,) = await fetch_n(c2, 1)
        assert m3.sequence == 3
        await _nothing(c2, 0.2)  # max_ack_pending is updated to 1
        await m3.ack()
        assert [m.sequence for m in await fetch_n(c2, 1)] == [4]
        with pytest.raises(ConfigurationError):
            await t.open_consumer("S", ConsumerConfig(name="c", filter_subject="other"))
        await c2.close()


async def test_a_consumer_group_shares_the_messages(make_transport: MakeTransport) -> None:
    async with started(make_transport) as t1, started(make_transport) as t2:
        await _stream(t1, 30)
        cfg = ConsumerConfig(name="group", deliver="all")
        handles = [await t1.open_consumer("S", cfg), await t2.open_consumer("S", cfg)]
        got: list[list[int]] = [[], []]

        async def member(i: int) -> None:
            while sum(map(len, got)) < 30:
                for m in await handles[i].fetch(3, timeout=0.2):
                    got[i].append(m.sequence)
                    await m.ack()
                await asyncio.sleep(0)  # let the other member fetch too

        async with asyncio.timeout(DEADLINE):
            await asyncio.gather(member(0), member(1))
        for h in handles:
            await h.close()
    assert sorted(got[0] + got[1]) == list(range(1, 31)), "each message to one member, once"
    assert got[0]
    assert got[1], "both members of the group were delivered some"


async def test_max_ack_pending_bounds_all_handles_together(make_transport: MakeTransport) -> None:
    async with started(make_transport) as t1, started(make_transport) as t2:
        await _stream(t1, 10)
        cfg = ConsumerConfig(name="group", deliver="all", max_ack_pending=3)
        h1, h2 = await t1.open_consumer("S", cfg), await t2.open_consumer("S", cfg)
        held = await fetch_n(h1, 2)
        held += await fetch_n(h2, 1)
        await _nothing(h1, 0.2)
        await _nothing(h2, 0.2)
        await held[0].ack()
        (more,) = await fetch_n(h2, 1)  # room for one again
        assert len({m.sequence for m in [*held, more]}) == 4
        for h in (h1, h2):
            await h.close()


async def test_consumer_info_reports_lag_and_positions(make_transport: MakeTransport) -> None:
    async with started(make_transport) as t:
        await _stream(t, 3, "orders.new")
        await t.append("S", event("other", 9))
        await t.append("S", event("orders.new", 3))
        c = await t.open_consumer(
            "S", ConsumerConfig(name="c", filter_subject="orders.*", deliver="all")
        )
        info = await _info(c, num_pending=4, num_ack_pending=0, delivered_seq=0)
        assert (info.name, info.stream, info.filter_subject) == ("c", "S", "orders.*")
        first, second = await fetch_n(c, 2)
        await first.ack()
        await _info(c, num_pending=2, num_ack_pending=1, delivered_seq=2, ack_floor=1)
        await second.ack()
        for m in await fetch_n(c, 2):
            await m.ack()
        await _info(c, num_pending=0, num_ack_pending=0, delivered_seq=5, ack_floor=5)
        await c.close()


async def test_filters_select_subjects(make_transport: MakeTransport) -> None:
    async with started(make_transport) as t:
        await t.ensure_stream(StreamConfig(name="S"))
        for n, topic in enumerate(["orders", "orders.eu", "orders.eu.paid", "shipments.eu"]):
            await t.append("S", event(topic, n))
        want = {
            "orders.*": [2],
            "orders.>": [2, 3],
            "*.eu": [2, 4],
            "orders": [1],
            ">": [1, 2, 3, 4],
        }
        for i, (filt, seqs) in enumerate(want.items()):
            c = await t.open_consumer(
                "S", ConsumerConfig(name=f"f{i}", filter_subject=filt, deliver="all")
            )
            assert [m.sequence for m in await fetch_n(c, len(seqs))] == seqs, filt
            await _nothing(c, 0.1)
            await c.close()


async def test_fetch_waits_for_a_new_message(make_transport: MakeTransport) -> None:
    async with started(make_transport) as t1, started(make_transport) as t2:
        await _stream(t1, 0)
        c = await t1.open_consumer("S", ConsumerConfig(name="c", deliver="new"))
        with pytest.raises(ConfigurationError):
            await c.fetch(0, timeout=0.1)
        waiting = asyncio.ensure_future(c.fetch(1, timeout=DEADLINE))
        await asyncio.sleep(0.05)  # the fetch is waiting when the event arrives
        t0 = time.monotonic()
        await t2.append("S", event("x", 7))
        (m,) = await waiting
        assert m.sequence == 1
        assert time.monotonic() - t0 < DEADLINE / 2, "a waiting fetch returns on arrival"
        await m.ack()
        await c.close()


async def test_deleting_a_consumer_forgets_it(make_transport: MakeTransport) -> None:
    async with started(make_transport) as t:
        await _stream(t, 2)
        c = await t.open_consumer("S", ConsumerConfig(name="c", deliver="all"))
        for m in await fetch_n(c, 2):
            await m.ack()
        assert await t.delete_consumer("S", "c") is True
        assert await t.delete_consumer("S", "c") is False
        assert await c.fetch(1, timeout=0.2) == [], "a handle on a deleted consumer"
        await c.close()
        fresh = await t.open_consumer("S", ConsumerConfig(name="c", deliver="all"))
        assert [m.sequence for m in await fetch_n(fresh, 2)] == [1, 2], "created anew"
        await fresh.close()
