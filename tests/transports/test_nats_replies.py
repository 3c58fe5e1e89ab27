"""The NATS transport's own request/reply (one reply subscription per connection)."""

from __future__ import annotations

import asyncio
import os

import pytest

from agentcomm.testing.extras import require_module
from agentcomm.testing.nats_server import NatsServer

nats = require_module("nats")

from agentcomm.transports.nats.replies import Replies  # noqa: E402

pytestmark = pytest.mark.nats


async def silent(msg: object) -> None:
    """A responder that never answers."""


async def test_each_request_gets_its_own_reply_through_one_subscription(
    nats_server: NatsServer,
) -> None:
    server, client = await nats.connect(nats_server.url), await nats.connect(nats_server.url)
    subject = "rp-test." + os.urandom(4).hex()

    async def echo(msg: object) -> None:
        await asyncio.sleep(0.001 * (int(msg.data) % 7))  # type: ignore[attr-defined]
        await msg.respond(msg.data)  # type: ignore[attr-defined]

    await server.subscribe(subject, cb=echo)
    await server.flush()
    replies = Replies(client)
    subs_before = len(client._subs)
    try:
        answers = await asyncio.gather(
            *(replies.request(subject, str(i).encode(), timeout=5) for i in range(300))
        )
        assert [int(m.data) for m in answers] == list(range(300))
        assert len(client._subs) == subs_before + 1, "one reply subscription for all"
        assert not replies._pending, "nothing is kept after its reply"
        with pytest.raises(nats.errors.NoRespondersError):
            await replies.request(subject + ".nobody", b"x", timeout=5)
        await server.subscribe(subject + ".silent", cb=silent)
        await server.flush()
        with pytest.raises(nats.errors.TimeoutError):
            await replies.request(subject + ".silent", b"x", timeout=0.2)
        assert not replies._pending
        waiting = asyncio.ensure_future(replies.request(subject + ".silent", b"x", timeout=30))
        await asyncio.sleep(0.05)
        await replies.close()
        with pytest.raises(nats.errors.ConnectionClosedError):
            await waiting
        with pytest.raises(nats.errors.ConnectionClosedError):  # no new subscription
            await replies.request(subject, b"x", timeout=5)
        assert len(client._subs) == subs_before
    finally:
        await client.close()
        await server.close()


async def test_a_cancelled_request_leaves_nothing_behind(nats_server: NatsServer) -> None:
    client = await nats.connect(nats_server.url)
    server = await nats.connect(nats_server.url)
    subject = "rp-test." + os.urandom(4).hex()
    await server.subscribe(subject, cb=silent)  # never answers
    await server.flush()
    replies = Replies(client)
    try:
        task = asyncio.ensure_future(replies.request(subject, b"x", timeout=30))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not replies._pending
    finally:
        await replies.close()
        await client.close()
        await server.close()
