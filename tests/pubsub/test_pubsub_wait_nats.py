"""``wait_dead_letter`` on a shared engine: a dead letter stored by another runtime wakes it."""

from __future__ import annotations

import asyncio
import contextlib
import os

import pytest

from agentcomm import Agent, Reject, Runtime
from agentcomm.testing.extras import require_module
from agentcomm.testing.nats_server import NatsServer

require_module("nats")

from agentcomm.transports.nats.transport import NatsTransport  # noqa: E402

pytestmark = pytest.mark.nats


async def test_a_dead_letter_stored_by_another_runtime_wakes_the_waiter(
    nats_server: NatsServer,
) -> None:
    ns = "w" + os.urandom(6).hex()
    worker = Agent("worker")

    @worker.on("jobs.*")
    async def refuse(n: int) -> None:
        raise Reject(f"no {n}")

    async with (
        Runtime(transport=NatsTransport(nats_server.url, namespace=ns), agents=[worker]) as rt_w,
        Runtime(transport=NatsTransport(nats_server.url, namespace=ns)) as rt_watch,
    ):
        await rt_w.events.start()
        loop = asyncio.get_running_loop()
        waiter = asyncio.ensure_future(
            rt_watch.events.wait_dead_letter(topic="jobs.b", timeout=30.0)
        )
        try:
            await asyncio.sleep(0.2)  # the watcher has read the (empty) queue and sleeps
            assert not waiter.done()
            began = loop.time()
            p = rt_w.agent("p")
            await p.publish("jobs.a", {"n": 1})  # not a match: it sleeps on
            await p.publish("jobs.b", {"n": 2})
            dl = await waiter
        finally:
            waiter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await waiter
        assert loop.time() - began < 10.0, "woken by the stream, long before its timeout"
        assert (dl.topic, dl.last_error, dl.subscription) == ("jobs.b", "no 2", "worker__refuse")
        assert (await rt_watch.transport.stream_info("DLQ")).messages == 2
