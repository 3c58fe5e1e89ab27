"""The in-memory transport: the whole contract, in one process, with zero set-up.

It is a real engine, not a mock: bounded mailboxes with backpressure, fail-fast
``NoResponders``, per-request futures and deadlines. Envelopes are immutable and
payloads travel as encoded bytes, so a receiver can never change what a sender holds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING

import msgspec

from agentcomm.core.deadlines import DeadlineWheel, wheel_for
from agentcomm.core.envelope import new_id
from agentcomm.core.errors import (
    ConfigurationError,
    MailboxFull,
    NoResponders,
    RequestTimeout,
    TransportClosed,
)
from agentcomm.transports.base import Delivery, Inbox, Transport
from agentcomm.transports.channels import Channel, Sink
from agentcomm.transports.memory.kv import MemoryKV
from agentcomm.transports.memory.log import MemoryEventLog

if TYPE_CHECKING:
    from agentcomm.core.envelope import Envelope

__all__ = ["MemoryTransport"]


def _isolate(env: Envelope) -> Envelope:
    # The envelope is frozen and its payload is bytes; only the headers dict is mutable.
    if env.headers:
        return msgspec.structs.replace(env, headers=dict(env.headers))
    return env


class _MemoryNotification(Delivery):
    __slots__ = ()


class _MemoryRequest(Delivery):
    """A request in flight: answers its future, and expires at its deadline."""

    __slots__ = ("_future", "_slot", "_wheel")

    expires = True  # expire() also stops the handler running for it
    _slot: int

    def __init__(
        self, envelope: Envelope, future: asyncio.Future[Envelope], wheel: DeadlineWheel
    ) -> None:
        self.envelope = envelope  # ``runner`` stays unset until a handler runs (hot path)
        self._future = future
        self._wheel = wheel

    def reply(self, response: Envelope) -> None:
        fut = self._future
        if not fut.done():
            fut.set_result(_isolate(response) if response.headers else response)
            bucket = self._wheel._slots.get(self._slot)  # inlined DeadlineWheel.discard
            if bucket is not None:
                bucket.discard(self)

    def expire(self) -> None:
        runner = getattr(self, "runner", None)
        if runner is not None:
            runner.expire()
        fut = self._future
        if not fut.done():
            env = self.envelope
            timeout = (env.deadline or env.created) - env.created
            fut.set_exception(RequestTimeout(env.recipient or "?", env.handler, timeout))


class _MemoryChannel(Channel):
    __slots__ = ("_channels", "address")

    def __init__(self, channels: dict[str, Sink], address: str) -> None:
        self._channels = channels
        self.address = address

    async def close(self) -> None:
        self._channels.pop(self.address, None)


class MemoryTransport(MemoryKV, MemoryEventLog, Transport):
    """In-process engine; the default when a runtime is given no transport.

    Example::

        async with Runtime(transport=MemoryTransport()) as rt: ...
    """

    name = "memory"

    def __init__(self) -> None:
        MemoryKV.__init__(self)
        MemoryEventLog.__init__(self)
        self._inboxes: dict[str, Inbox] = {}
        self._channels: dict[str, Sink] = {}
        #: Frames posted to a channel that was already closed (its reader had gone).
        self.discarded_frames = 0
        self._running = False
        self._wheel: DeadlineWheel | None = None

    async def start(self) -> None:
        self._running = True
        self._wheel = wheel_for(asyncio.get_running_loop())

    async def close(self) -> None:
        self._running = False
        self._inboxes.clear()
        self._channels.clear()
        self._kv_close()  # TTL timers and key/value watchers end with the transport

    async def bind(self, address: str, inbox: Inbox) -> None:
        self.bind_nowait(address, inbox)

    def bind_nowait(self, address: str, inbox: Inbox) -> bool:
        if not self._running:
            raise TransportClosed("the memory transport is not started")
        if address in self._inboxes:
            raise ConfigurationError(
                f"address {address!r} is already bound; agent names are unique"
            )
        self._inboxes[address] = inbox
        return True

    async def unbind(self, address: str) -> None:
        self._inboxes.pop(address, None)

    def _inbox(self, env: Envelope) -> Inbox:
        inbox = self._inboxes.get(env.recipient or "")
        if inbox is None:
            if not self._running:
                raise TransportClosed("the memory transport is not started")
            raise NoResponders(env.recipient or "")
        return inbox

    async def send(self, envelope: Envelope, *, block: bool = True) -> None:
        inbox = self._inbox(envelope)
        delivery = _MemoryNotification(_isolate(envelope))
        try:
            inbox.put_nowait(delivery)
        except MailboxFull:
            if not block:
                raise
            await inbox.put(delivery)

    def request(self, envelope: Envelope, timeout: float) -> Awaitable[Envelope]:
        inbox = self._inboxes.get(envelope.recipient or "")
        if inbox is None:
            inbox = self._inbox(envelope)  # raises the right error
        wheel = self._wheel
        if wheel is None or wheel._loop is not asyncio.get_running_loop():
            raise TransportClosed("the memory transport is not started in this event loop")
        fut: asyncio.Future[Envelope] = asyncio.Future(loop=wheel._loop)
        if envelope.headers:
            envelope = _isolate(envelope)
        delivery = _MemoryRequest(envelope, fut, wheel)
        # The delivery leaves the wheel when answered; if the caller is cancelled it
        # stays until its deadline (bounded by the timeout), then expires as a no-op.
        deadline = envelope.deadline
        if deadline is None:
            deadline = time.time() + timeout
        delivery._slot = wheel.add(delivery, deadline)  # one timer per slot
        try:
            inbox.put_nowait(delivery)
        except MailboxFull:
            return self._request_when_room(inbox, delivery, fut)
        return fut

    async def _request_when_room(
        self, inbox: Inbox, delivery: _MemoryRequest, fut: asyncio.Future[Envelope]
    ) -> Envelope:
        put = asyncio.ensure_future(inbox.put(delivery))
        try:
            await asyncio.wait((put, fut), return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not put.done():
                put.cancel()
        return await fut

    # -- channels (docs/streams-and-tasks.md) -------------------------------------
    async def signal(self, envelope: Envelope) -> None:
        inbox = self._inboxes.get(envelope.recipient or "")
        if inbox is not None:
            inbox.control(_isolate(envelope))

    async def open_channel(self, sink: Sink) -> Channel:
        if not self._running:
            raise TransportClosed("the memory transport is not started")
        address = f"ch.{new_id()}"
        self._channels[address] = sink
        return _MemoryChannel(self._channels, address)

    async def post(self, address: str, envelope: Envelope) -> None:
        sink = self._channels.get(address)
        if sink is None:
            self.discarded_frames += 1
            return
        sink(_isolate(envelope) if envelope.headers else envelope)
