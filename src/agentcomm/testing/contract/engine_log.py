"""Engine contract: the event log's streams, driven on the ``Transport`` itself.

Sequences, reads by sequence and subject, deletes, dedupe by message id (and
``append_checked`` saying truthfully which appends were duplicates), retention by
count, bytes and age, limits lowered on a live stream. Consumers are in
``contract.engine_consumers``.
"""

from __future__ import annotations

import msgspec
import pytest

from agentcomm.core.envelope import Envelope
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
from agentcomm.transports.streams import ConsumerConfig, StreamConfig

__all__ = [
    "test_a_deleted_message_is_gone_for_reads_and_consumers",
    "test_append_numbers_envelopes_and_reads_find_them",
    "test_append_checked_reports_duplicates_truthfully",
    "test_duplicates_are_new_again_after_the_window",
    "test_ensure_stream_is_idempotent_and_keeps_the_messages",
    "test_lowering_a_limit_drops_the_oldest_at_once",
    "test_max_age_drops_old_messages",
    "test_max_bytes_bounds_the_log",
    "test_max_msgs_keeps_the_newest",
    "test_streams_and_topics_are_checked",
    "test_streams_have_their_own_subjects",
]


def _n(env: Envelope) -> int:
    n: int = msgspec.json.decode(env.payload)
    return n


async def _fill(t: Transport, stream: str, count: int, topic: str = "x") -> list[int]:
    return [await t.append(stream, event(topic, n)) for n in range(count)]


async def test_append_numbers_envelopes_and_reads_find_them(make_transport: MakeTransport) -> None:
    async with started(make_transport) as t:
        info = await t.ensure_stream(StreamConfig(name="S"))
        assert (info.name, info.messages, info.first_seq, info.last_seq) == ("S", 0, 1, 0)
        topics = ["a.x", "a.y", "b.x", "a.y.z", "a.x"]
        sent = [event(topic, n) for n, topic in enumerate(topics)]
        seqs = [await t.append("S", env) for env in sent]
        assert seqs == [1, 2, 3, 4, 5]
        info = await t.stream_info("S")
        assert (info.messages, info.first_seq, info.last_seq) == (5, 1, 5)
        assert info.bytes > 0
        got = await t.get_message("S", 3)
        assert got is not None
        assert (got.id, got.topic, got.sequence, _n(got)) == (sent[2].id, "b.x", 3, 2)
        assert sent[2].sequence is None, "the caller's envelope is not changed"
        assert await t.get_message("S", 99) is None
        every = await t.read_messages("S")
        assert [(e.sequence, _n(e)) for e in every] == [(s, s - 1) for s in seqs]
        assert [e.sequence for e in await t.read_messages("S", filter_subject="a.*")] == [1, 2, 5]
        assert [e.sequence for e in await t.read_messages("S", filter_subject="a.>")] == [
            1,
            2,
            4,
            5,
        ]
        assert [e.sequence for e in await t.read_messages("S", start_seq=2, limit=2)] == [2, 3]
        assert [
            e.sequence for e in await t.read_messages("S", start_seq=3, filter_subject="a.x")
        ] == [5]
        assert await t.read_messages("S", start_seq=6) == []


async def test_streams_have_their_own_subjects(make_transport: MakeTransport) -> None:
    async with started(make_transport) as t:
        for name in ("ONE", "TWO"):
            await t.ensure_stream(StreamConfig(name=name))
        assert await t.append("ONE", event("same.topic", 1)) == 1
        assert await t.append("TWO", event("same.topic", 2)) == 1, "each has its own sequences"
        assert await t.append("ONE", event("same.topic", 3)) == 2
        assert [_n(e) for e in await t.read_messages("ONE")] == [1, 3]
        assert [_n(e) for e in await t.read_messages("TWO")] == [2]


async def test_streams_and_topics_are_checked(make_transport: MakeTransport) -> None:
    async with started(make_transport) as t:
        with pytest.raises(ConfigurationError):
            await t.append("NEVER", event("x"))
        with pytest.raises(ConfigurationError):
            await t.stream_info("NEVER")
        with pytest.raises(ConfigurationError):
            await t.open_consumer("NEVER", ConsumerConfig(name="c"))
        with pytest.raises(ConfigurationError):
            await t.delete_consumer("NEVER", "c")
        with pytest.raises(ConfigurationError):
            await t.get_message("NEVER", 1)
        with pytest.raises(ConfigurationError):
            await t.read_messages("NEVER")
        with pytest.raises(ConfigurationError):
            await t.delete_message("NEVER", 1)
        await t.ensure_stream(StreamConfig(name="S"))
        no_topic = msgspec.structs.replace(event("x"), topic=None)
        with pytest.raises(ConfigurationError):
            await t.append("S", no_topic)
        assert (await t.stream_info("S")).messages == 0


async def test_a_deleted_message_is_gone_for_reads_and_consumers(
    make_transport: MakeTransport,
) -> None:
    async with started(make_transport) as t:
        await t.ensure_stream(StreamConfig(name="S"))
        await _fill(t, "S", 3)
        assert await t.delete_message("S", 2) is True
        assert await t.delete_message("S", 2) is False
        assert await t.delete_message("S", 42) is False
        assert await t.get_message("S", 2) is None
        assert [e.sequence for e in await t.read_messages("S")] == [1, 3]
        assert (await t.stream_info("S")).messages == 2
        c = await t.open_consumer("S", ConsumerConfig(name="c", deliver="all"))
        assert [m.sequence for m in await fetch_n(c, 2)] == [1, 3]
        assert await c.fetch(10, timeout=0.2) == []
        await c.close()


async def test_append_checked_reports_duplicates_truthfully(make_transport: MakeTransport) -> None:
    async with started(make_transport) as t:
        await t.ensure_stream(StreamConfig(name="S"))
        assert await t.append_checked("S", event("pay", 1), msg_id="pay-1") == (1, False)
        assert await t.append_checked("S", event("pay", 1), msg_id="pay-1") == (1, True)
        assert await t.append("S", event("pay", 1), msg_id="pay-1") == 1
        assert await t.append_checked("S", event("pay", 2), msg_id="pay-2") == (2, False)
        assert await t.append_checked("S", event("pay", 3)) == (3, False)
        assert await t.append_checked("S", event("pay", 3)) == (4, False), "no id: never a dup"
        info = await t.stream_info("S")
        assert (info.messages, info.last_seq) == (4, 4), "a duplicate stores nothing"
        assert [_n(e) for e in await t.read_messages("S")] == [1, 2, 3, 3]


async def test_duplicates_are_new_again_after_the_window(make_transport: MakeTransport) -> None:
    async with started(make_transport) as t:
        await t.ensure_stream(StreamConfig(name="D", duplicate_window=0.5))
        # a window longer than the messages live is cut to their age (JetStream's rule)
        await t.ensure_stream(StreamConfig(name="E", max_age=0.5, duplicate_window=120.0))
        for stream in ("D", "E"):
            assert await t.append_checked(stream, event("x"), msg_id="m") == (1, False)
            assert await t.append_checked(stream, event("x"), msg_id="m") == (1, True)
        await wait_clock(0.5)
        for stream in ("D", "E"):

            async def stored_again(stream: str = stream) -> bool:  # on the engine's clock
                seq, duplicate = await t.append_checked(stream, event("x"), msg_id="m")
                return not duplicate and seq == 2

            await until(stored_again, DEADLINE, f"{stream} forgot the id after the window")
            assert await t.append_checked(stream, event("x"), msg_id="m") == (2, True)


async def test_max_msgs_keeps_the_newest(make_transport: MakeTransport) -> None:
    async with started(make_transport) as t:
        await t.ensure_stream(StreamConfig(name="S", max_msgs=5))
        await _fill(t, "S", 20)
        info = await t.stream_info("S")
        assert (info.messages, info.first_seq, info.last_seq) == (5, 16, 20)
        assert [_n(e) for e in await t.read_messages("S")] == list(range(15, 20))
        assert await t.get_message("S", 15) is None
        c = await t.open_consumer("S", ConsumerConfig(name="c", deliver="all"))
        assert [m.sequence for m in await fetch_n(c, 5)] == [16, 17, 18, 19, 20]
        await c.close()


async def test_max_bytes_bounds_the_log(make_transport: MakeTransport) -> None:
    async with started(make_transport) as t:
        await t.ensure_stream(StreamConfig(name="B", max_bytes=2000))
        await _fill(t, "B", 100)
        info = await t.stream_info("B")
        assert 0 < info.bytes <= 2000
        assert 0 < info.messages < 100
        assert info.last_seq == 100
        assert info.first_seq == 101 - info.messages, "the oldest went first"


async def test_max_age_drops_old_messages(make_transport: MakeTransport) -> None:
    async with started(make_transport) as t:
        await t.ensure_stream(StreamConfig(name="A", max_age=0.5, duplicate_window=0.5))
        await t.append("A", event("x", 1))
        await wait_clock(0.5)

        async def aged_out() -> bool:
            return (await t.stream_info("A")).messages == 0

        await until(aged_out, DEADLINE, "the message aged out")
        assert await t.get_message("A", 1) is None
        assert await t.append("A", event("x", 2)) == 2
        info = await t.stream_info("A")
        assert (info.messages, info.first_seq, info.last_seq) == (1, 2, 2)


async def test_lowering_a_limit_drops_the_oldest_at_once(make_transport: MakeTransport) -> None:
    async with started(make_transport) as t:
        await t.ensure_stream(StreamConfig(name="S", max_msgs=100))
        await _fill(t, "S", 10)
        info = await t.ensure_stream(StreamConfig(name="S", max_msgs=3))
        assert (info.messages, info.first_seq, info.last_seq) == (3, 8, 10)
        assert [e.sequence for e in await t.read_messages("S")] == [8, 9, 10]


async def test_ensure_stream_is_idempotent_and_keeps_the_messages(
    make_transport: MakeTransport,
) -> None:
    async with started(make_transport) as t1, started(make_transport) as t2:
        await t1.ensure_stream(StreamConfig(name="S"))
        await _fill(t1, "S", 3)
        info = await t2.ensure_stream(StreamConfig(name="S"))  # another user of the engine
        assert (info.messages, info.last_seq) == (3, 3)
        assert await t2.append("S", event("x", 3)) == 4
        assert [_n(e) for e in await t1.read_messages("S")] == [0, 1, 2, 3]
