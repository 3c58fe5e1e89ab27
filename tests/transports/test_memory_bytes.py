"""The in-memory event log's ``max_bytes`` is a memory bound (issue 17: it counted
~257 B per event while an event took 740-940 B): the estimate is checked against
what tracemalloc sees."""

from __future__ import annotations

import tracemalloc

import pytest

from agentcomm.core.envelope import Envelope, encode_payload, new_id
from agentcomm.transports.memory import MemoryTransport
from agentcomm.transports.streams import StreamConfig


@pytest.mark.parametrize(
    ("pad", "headers"),
    [(0, {}), (1000, {}), (0, {"trace": "x" * 40, "tenant": "acme"})],
)
async def test_counted_bytes_are_within_a_fifth_of_real_memory(
    pad: int, headers: dict[str, str]
) -> None:
    t = MemoryTransport()
    await t.start()
    await t.ensure_stream(StreamConfig(name="S", max_msgs=100_000, max_bytes=1 << 40))
    n = 5_000
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(n):
            env = Envelope(
                id=new_id(),
                kind="event",
                sender="pub",
                topic="orders.created",
                key=f"c-{i % 100}",
                headers=dict(headers),
                payload=encode_payload({"n": i, "pad": "p" * pad}),
            )
            await t.append("S", env)
        real = (tracemalloc.get_traced_memory()[0] - before) / n
    finally:
        tracemalloc.stop()
    counted = (await t.stream_info("S")).bytes / n
    await t.close()
    assert 0.8 * real <= counted <= 1.2 * real, (real, counted)


async def test_max_bytes_bounds_what_is_kept() -> None:
    t = MemoryTransport()
    await t.start()
    await t.ensure_stream(StreamConfig(name="S", max_msgs=100_000, max_bytes=1 << 20))
    for i in range(10_000):
        env = Envelope(id=new_id(), kind="event", sender="p", topic="t", payload=encode_payload(i))
        await t.append("S", env)
    info = await t.stream_info("S")
    assert info.bytes <= 1 << 20
    assert 1_000 < info.messages < 2_500  # about 1 MiB of ~600-byte events
    await t.close()
