"""The in-memory transport: the whole contract, in one process, with zero set-up.

It is a real engine, not a mock: bounded mailboxes with backpressure, fail-fast
``NoResponders``, per-request futures and deadlines. Envelopes are immutable and
payloads travel as encoded bytes, so a receiver can never change what a sender holds.

Several runtimes may share one ``MemoryTransport`` (as workers share dramatiq's
``StubBroker``): ``start``/``close`` are counted, so the engine's state lives until
the last runtime closes, and one agent name bound by several runtimes is a queue
group, as on NATS: each message goes to one of them in turn, control signals to all.
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
from agentcomm.core.limits import ENGINE_MAX_PAYLOAD, too_large
from agentcomm.core.responses import error_response
from agentcomm.transports.base import Delivery, Inbox, Transport
from agentcomm.transports.channels import Channel, Sink
from agentcomm.transports.memory.broadcast import MemoryBroadcast
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

    __slots__ = ("_future", "_max", "_slot", "_wheel")

    expires = True  # expire() also stops the handler running for it
    _slot: int

    def __init__(
        self,
        envelope: Envelope,
        future: asyncio.Future[Envelope],
        wheel: DeadlineWheel,
        max_payload: int,
    ) -> None:
        self.envelope = envelope  # ``runner`` stays unset until a handler runs (hot path)
        self._future = future
        self._wheel = wheel
        self._max = max_payload

    def reply(self, response: Envelope) -> None:
        fut = self._future
        if len(response.payload) > self._max:  # as NATS would refuse it: say so
            err = too_large(f"answer of {response.sender!r}", len(response.payload), self._max)
            response = error_response(
                self.envelope, response.sender, "limit", "LimitExceeded", str(err)
            )
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


class _QueueGroup:
    """Inboxes bound to one address by several runtimes: the :class:`Inbox` the engine
    delivers into. Each delivery goes to one member in turn; control frames to all."""

    __slots__ = ("_last", "_next", "members")

    def __init__(self, members: list[Inbox]) -> None:
        self.members = members
        self._next = 0
        self._last = members[0]

    @property
    def capacity(self) -> int:
        return sum(m.capacity for m in self.members)

    def put_nowait(self, delivery: Delivery) -> None:
        members = self.members
        i = self._next % len(members)
        self._next = i + 1
        self._last = member = members[i]
        member.put_nowait(delivery)

    async def put(self, delivery: Delivery) -> None:
        # After put_nowait refused: wait for room where the delivery was turned away.
        await self._last.put(delivery)

    def control(self, envelope: Envelope) -> None:
        for m in list(self.members):  # each its own copy (headers are a dict)
            m.control(_isolate(envelope))


class MemoryTransport(MemoryKV, MemoryEventLog, MemoryBroadcast, Transport):
    """In-process engine; the default when a runtime is given no transport.

    Share one between runtimes to have them talk in one process (an agent name bound
    in two of them is a queue group); it is closed when the last of them closes.

    Example::

        async with Runtime(transport=MemoryTransport()) as rt: ...
        engine = MemoryTransport()
        async with Runtime(transport=engine) as rt1, Runtime(transport=engine) as rt2: ...
    """

    name = "memory"

    def __init__(self, *, max_payload: int = ENGINE_MAX_PAYLOAD) -> None:
        MemoryKV.__init__(self)
        MemoryEventLog.__init__(self)
        self._init_broadcast()
        #: The largest payload carried (NATS's default, so what works here works
        #: there): larger ones are ``LimitExceeded`` at the sender.
        self.max_payload = max_payload
        #: address -> its inbox, or a _QueueGroup of the inboxes bound to it
        self._inboxes: dict[str, Inbox] = {}
        self._channels: dict[str, Sink] = {}
        #: Frames posted to a channel that was already closed (its reader had gone).
        self.discarded_frames = 0
        self._running = False
        self._users = 0  # runtimes that started this engine and have not closed it
        self._wheel: DeadlineWheel | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        if self._users and self._wheel is not None and self._wheel._loop is not loop:
            raise ConfigurationError(
                "this memory transport is running in another event loop; "
                "runtimes share one only within one loop"
            )
        self._users += 1
        if self._users == 1:
            self._running = True
            self._wheel = wheel_for(loop)

    async def close(self) -> None:
        if self._users > 1:  # another runtime still uses the engine
            self._users -= 1
            return
        self._users = 0
        self._running = False
        self._inboxes.clear()
        self._channels.clear()
        self._close_broadcast()
        self._kv_close()  # TTL timers and key/value watchers end with the transport

    async def bind(self, address: str, inbox: Inbox) -> None:
        self.bind_nowait(address, inbox)

    def bind_nowait(self, address: str, inbox: Inbox) -> bool:
        if not self._running:
            raise TransportClosed("the memory transport is not started")
        have = self._inboxes.get(address)
        if have is None:
            self._inboxes[address] = inbox
            return True
        members = have.members if isinstance(have, _QueueGroup) else [have]
        if any(m is inbox for m in members):
            raise ConfigurationError(f"address {address!r} is already bound to this inbox")
        self._inboxes[address] = _QueueGroup([*members, inbox])
        return True

    async def flush(self, timeout: float = 5.0) -> None:
        return None  # bindings and deliveries take effect when the call returns

    async def unbind(self, address: str, inbox: Inbox) -> None:
        have = self._inboxes.get(address)
        if have is inbox:
            del self._inboxes[address]
        elif isinstance(have, _QueueGroup):
            rest = [m for m in have.members if m is not inbox]
            if len(rest) != len(have.members):
                self._inboxes[address] = rest[0] if len(rest) == 1 else _QueueGroup(rest)

    def _inbox(self, env: Envelope) -> Inbox:
        inbox = self._inboxes.get(env.recipient or "")
        if inbox is None:
            if not self._running:
                raise TransportClosed("the memory transport is not started")
            raise NoResponders(env.recipient or "")
        return inbox

    async def send(self, envelope: Envelope, *, block: bool = True) -> None:
        if len(envelope.payload) > self.max_payload:
            raise too_large(
                f"notification to {envelope.recipient!r}", len(envelope.payload), self.max_payload
            )
        inbox = self._inbox(envelope)
        delivery = _MemoryNotification(_isolate(envelope))
        try:
            inbox.put_nowait(delivery)
        except MailboxFull:
            if not block:
                raise
            await inbox.put(delivery)

    def request(self, envelope: Envelope, timeout: float) -> Awaitable[Envelope]:
        if len(envelope.payload) > self.max_payload:
            raise too_large(
                f"request to {envelope.recipient!r}", len(envelope.payload), self.max_payload
            )
        inbox = self._inboxes.get(envelope.recipient or "")
        if inbox is None:
            inbox = self._inbox(envelope)  # raises the right error
        wheel = self._wheel
        if wheel is None or wheel._loop is not asyncio.get_running_loop():
            raise TransportClosed("the memory transport is not started in this event loop")
        fut: asyncio.Future[Envelope] = asyncio.Future(loop=wheel._loop)
        if envelope.headers:
            envelope = _isolate(envelope)
        delivery = _MemoryRequest(envelope, fut, wheel, self.max_payload)
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
            inbox.control(envelope if isinstance(inbox, _QueueGroup) else _isolate(envelope))

    async def open_channel(self, sink: Sink) -> Channel:
        if not self._running:
            raise TransportClosed("the memory transport is not started")
        address = f"ch.{new_id()}"
        self._channels[address] = sink
        return _MemoryChannel(self._channels, address)

    async def post(self, address: str, envelope: Envelope) -> None:
        if len(envelope.payload) > self.max_payload:
            raise too_large(f"{envelope.kind} frame", len(envelope.payload), self.max_payload)
        sink = self._channels.get(address)
        if sink is None:
            self.discarded_frames += 1
            return
        sink(_isolate(envelope) if envelope.headers else envelope)
