"""Channels on NATS: frames posted in one turn leave as one message (a JSON array).

The behaviour every engine shares (order, closed channels) is in the engine
contract; these tests pin what only NATS does: batching, its bounds, what a
foreign reader sees, and that a lost batch is told to the next post.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import msgspec
import pytest

from agentcomm.core.envelope import Envelope, decode_envelopes
from agentcomm.core.errors import TransportError
from agentcomm.testing.contract.engine_support import message, until
from agentcomm.testing.extras import require_module
from agentcomm.testing.nats_server import NatsServer

nats = require_module("nats")

from agentcomm.transports.nats.channels import BATCH_BYTES  # noqa: E402
from agentcomm.transports.nats.transport import NatsTransport  # noqa: E402

pytestmark = pytest.mark.nats


@asynccontextmanager
async def pair(url: str) -> AsyncIterator[tuple[NatsTransport, NatsTransport, list[Envelope]]]:
    """A reader and a writer transport, and the frames the reader's sink got."""
    ns = "ch" + os.urandom(4).hex()
    reader, writer = NatsTransport(url, namespace=ns), NatsTransport(url, namespace=ns)
    await reader.start()
    await writer.start()
    try:
        yield reader, writer, []
    finally:
        await writer.close()
        await reader.close()


async def wire_messages(url: str, subject: str) -> tuple[list[bytes], object]:
    """A raw client that records every NATS message on ``subject``."""
    raw = await nats.connect(url)
    seen: list[bytes] = []

    async def on_msg(msg: object) -> None:
        seen.append(msg.data)  # type: ignore[attr-defined]

    await raw.subscribe(subject, cb=on_msg)
    await raw.flush()
    return seen, raw


def numbers(frames: list[Envelope]) -> list[int]:
    return [msgspec.json.decode(f.payload) for f in frames]


async def test_frames_posted_in_one_turn_arrive_in_order_as_few_messages(
    nats_server: NatsServer,
) -> None:
    async with pair(nats_server.url) as (reader, writer, frames):
        ch = await reader.open_channel(frames.append)
        seen, raw = await wire_messages(nats_server.url, ch.address)
        await reader.flush()
        for i in range(500):  # no wait between posts: one turn
            await writer.post(ch.address, message("reader", i, kind="chunk"))
        await writer.flush()
        await until(lambda: len(frames) == 500)
        assert numbers(frames) == list(range(500))
        await until(lambda: sum(len(decode_envelopes(d)) for d in seen) == 500)
        assert len(seen) < 20, f"500 frames took {len(seen)} NATS messages"
        assert all(len(d) <= BATCH_BYTES for d in seen)
        await raw.close()  # type: ignore[attr-defined]


async def test_a_frame_alone_is_a_plain_envelope_and_big_turns_split(
    nats_server: NatsServer,
) -> None:
    async with pair(nats_server.url) as (reader, writer, frames):
        ch = await reader.open_channel(frames.append)
        seen, raw = await wire_messages(nats_server.url, ch.address)
        await reader.flush()
        await writer.post(ch.address, message("reader", -1, kind="chunk"))
        await writer.flush()  # the poster waited: the frame left on its own
        big = "x" * 10_000
        for i in range(40):  # ~400 KB in one turn: several batches of <= BATCH_BYTES
            await writer.post(ch.address, message("reader", [i, big], kind="chunk"))
        await writer.flush()
        await until(lambda: len(frames) == 41)
        await until(lambda: sum(len(decode_envelopes(d)) for d in seen) == 41)
        assert seen[0].startswith(b"{"), "a lone frame is an envelope, not an array"
        assert len(seen) >= 1 + 400_000 // BATCH_BYTES
        assert all(len(d) <= BATCH_BYTES for d in seen)
        assert [msgspec.json.decode(f.payload) for f in frames[1:]] == [[i, big] for i in range(40)]
        await raw.close()  # type: ignore[attr-defined]


async def test_closing_the_transport_sends_what_was_posted_first(nats_server: NatsServer) -> None:
    async with pair(nats_server.url) as (reader, writer, frames):
        ch = await reader.open_channel(frames.append)
        await reader.flush()
        for i in range(100):
            await writer.post(ch.address, message("reader", i, kind="chunk"))
        await writer.close()  # in the same turn as the posts
        await until(lambda: len(frames) == 100)
        assert numbers(frames) == list(range(100))


async def test_hostile_batches_are_counted_and_the_channel_keeps_working(
    nats_server: NatsServer,
) -> None:
    async with pair(nats_server.url) as (reader, _writer, frames):
        ch = await reader.open_channel(frames.append)
        await reader.flush()
        raw = await nats.connect(nats_server.url)
        good = msgspec.json.encode(message("reader", 7, kind="chunk"))
        for bad in (b"[1, 2]", b"[" * 200_000, b"[" + good + b",{}]", b"[" + good):
            await raw.publish(ch.address, bad)
        await raw.publish(ch.address, b"[" + good + b"]")
        await raw.flush()
        await until(lambda: len(frames) == 1)
        assert numbers(frames) == [7], "a bad batch delivers none of its frames"
        await until(lambda: reader.statistics().malformed == 4)
        await raw.close()


async def test_a_lost_batch_is_told_to_the_next_post_there(
    nats_server: NatsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with pair(nats_server.url) as (reader, writer, frames):
        ch = await reader.open_channel(frames.append)
        client = writer.client

        async def refuse(*args: object, **kwargs: object) -> None:
            raise nats.errors.OutboundBufferLimitError()

        monkeypatch.setattr(client, "publish", refuse)
        await writer.post(ch.address, message("reader", 1, kind="chunk"))
        await asyncio.sleep(0.05)  # the batch is sent, and fails
        monkeypatch.undo()
        with pytest.raises(TransportError, match="posting to"):
            await writer.post(ch.address, message("reader", 2, kind="chunk"))
        await writer.post(ch.address, message("reader", 3, kind="chunk"))  # told once
        await writer.flush()
        await until(lambda: len(frames) == 1)
        assert numbers(frames) == [3]
