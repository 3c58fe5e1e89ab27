"""What the engine contract suites share: an inbox to bind, envelopes, a started engine.

The engine suites (``contract.engine_messaging``, ``engine_log``, ``engine_consumers``,
``engine_kv``) drive a :class:`~agentcomm.transports.base.Transport` directly, with
no runtime above it, through the ``make_transport`` fixture of
:mod:`agentcomm.testing.fixtures`.

Example::

    async with started(make_transport) as t:
        box = Box()
        await t.bind("w", box)
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from agentcomm.core.envelope import Envelope, encode_payload, new_id
from agentcomm.host.mailbox import Mailbox
from agentcomm.testing.fixtures import MakeTransport
from agentcomm.transports.base import Delivery, Transport
from agentcomm.transports.streams import LogConsumer, LogMessage

__all__ = ["DEADLINE", "Box", "event", "fetch_n", "message", "started", "until", "wait_clock"]

#: Upper bound of every wait in the engine suites (seconds); none is a fixed sleep.
DEADLINE = 10.0


class Box:
    """An :class:`~agentcomm.transports.base.Inbox` for the engine suites: a bounded
    mailbox, the control frames it was handed, and a helper that answers requests.

    Example::

        box = Box(capacity=4)
        await t.bind("w", box)
        delivery = await box.take()
    """

    def __init__(self, capacity: int = 64) -> None:
        self._mailbox = Mailbox("engine-suite", capacity, control=self._on_control)
        self.controls: list[Envelope] = []
        self._control_seen = asyncio.Event()

    # -- the Inbox protocol ---------------------------------------------------
    @property
    def capacity(self) -> int:
        return self._mailbox.capacity

    def put_nowait(self, delivery: Delivery) -> None:
        self._mailbox.put_nowait(delivery)

    async def put(self, delivery: Delivery) -> None:
        await self._mailbox.put(delivery)

    def control(self, envelope: Envelope) -> None:
        self._mailbox.control(envelope)

    # -- for the tests --------------------------------------------------------
    def __len__(self) -> int:
        return len(self._mailbox)

    def _on_control(self, envelope: Envelope) -> None:
        self.controls.append(envelope)
        self._control_seen.set()

    async def take(self, timeout: float = DEADLINE) -> Delivery:
        """The next delivery; TimeoutError when none arrives within ``timeout``."""
        async with asyncio.timeout(timeout):
            d = await self._mailbox.get()
        self._mailbox.wake_putter()  # room for a sender that waits
        return d

    def take_nowait(self) -> Delivery | None:
        """The next queued delivery, or ``None``."""
        return self._mailbox.get_nowait()

    async def wait_controls(self, n: int, timeout: float = DEADLINE) -> list[Envelope]:
        """The control frames once at least ``n`` arrived."""
        async with asyncio.timeout(timeout):
            while len(self.controls) < n:
                self._control_seen.clear()
                await self._control_seen.wait()
        return self.controls

    async def answer(self, delivery: Delivery, payload: Any) -> None:
        """Reply to a request delivery with ``payload``."""
        env = delivery.envelope
        response = Envelope(
            id=new_id(),
            kind="response",
            sender=env.recipient or "",
            recipient=env.sender,
            correlation_id=env.id,
            payload=encode_payload(payload),
        )
        pending = delivery.reply(response)
        if pending is not None:
            await pending


def message(
    recipient: str, payload: Any = None, *, kind: Any = "request", timeout: float | None = None
) -> Envelope:
    """A direct envelope from ``"tester"`` to ``recipient`` (a deadline with ``timeout``)."""
    now = time.time()
    return Envelope(
        id=new_id(),
        kind=kind,
        sender="tester",
        recipient=recipient,
        handler="h",
        payload=encode_payload(payload),
        created=now,
        deadline=None if timeout is None else now + timeout,
    )


def event(topic: str, n: int = 0) -> Envelope:
    """An event envelope on ``topic`` whose payload is ``n``."""
    return Envelope(
        id=new_id(), kind="event", sender="tester", topic=topic, payload=encode_payload(n)
    )


async def fetch_n(consumer: LogConsumer, n: int, timeout: float = DEADLINE) -> list[LogMessage]:
    """Fetch until ``n`` messages came (an engine may hand a batch out in parts)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    out: list[LogMessage] = []
    while len(out) < n and (left := end - loop.time()) > 0:
        out += await consumer.fetch(n - len(out), timeout=left)
    if len(out) < n:
        raise TimeoutError(f"{len(out)} of {n} messages within {timeout:g} s")
    return out


@contextlib.asynccontextmanager
async def started(make_transport: MakeTransport) -> AsyncIterator[Transport]:
    """A transport on the test's engine, started, and closed on the way out."""
    t = make_transport()
    await t.start()
    try:
        yield t
    finally:
        await t.close()


async def until(cond: Callable[[], Any], timeout: float = DEADLINE, what: str = "") -> None:
    """Wait until ``cond()`` (sync or async) is true, checking every 10 ms; for what an
    engine does on its own clock (a server expiring messages), never for our own work."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        got = cond()
        if asyncio.iscoroutine(got):
            got = await got
        if got:
            return
        if loop.time() > end:
            raise TimeoutError(f"not within {timeout:g} s: {what or cond}")
        await asyncio.sleep(0.01)


async def wait_clock(seconds: float) -> None:
    """Let the wall clock move ``seconds`` on (for ages and windows measured in time)."""
    end = time.time() + seconds
    await asyncio.sleep(seconds)
    if (behind := end - time.time()) > 0:  # the wall clock may lag the loop's a little
        await asyncio.sleep(behind + 0.001)
