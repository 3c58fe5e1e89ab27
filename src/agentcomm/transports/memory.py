"""The in-memory transport: the whole contract, in one process, with zero set-up.

It is a real engine, not a mock: bounded mailboxes with backpressure, fail-fast
``NoResponders``, per-request futures and deadlines. Envelopes are immutable and
payloads travel as encoded bytes, so a receiver can never change what a sender holds.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import msgspec

from ..errors import ConfigurationError, MailboxFull, NoResponders, RequestTimeout, TransportClosed
from ._memory_kv import MemoryKV
from ._memory_log import MemoryEventLog
from .base import Delivery, Inbox, Transport

if TYPE_CHECKING:
    from ..envelope import Envelope

__all__ = ["MemoryTransport"]


def _isolate(env: Envelope) -> Envelope:
    # The envelope is frozen and its payload is bytes; only the headers dict is mutable.
    if env.headers:
        return msgspec.structs.replace(env, headers=dict(env.headers))
    return env


class _MemoryDelivery(Delivery):
    __slots__ = ("_future",)

    def __init__(self, envelope: Envelope, future: asyncio.Future[Envelope] | None) -> None:
        self.envelope = envelope
        self._future = future

    async def reply(self, response: Envelope) -> None:
        fut = self._future
        if fut is not None and not fut.done():
            fut.set_result(_isolate(response))


def _expire(fut: asyncio.Future[Envelope], env: Envelope, timeout: float) -> None:
    if not fut.done():
        fut.set_exception(RequestTimeout(env.recipient or "?", env.handler, timeout))


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
        self._running = False

    async def start(self) -> None:
        self._running = True

    async def close(self) -> None:
        self._running = False
        self._inboxes.clear()

    async def bind(self, address: str, inbox: Inbox) -> None:
        if not self._running:
            raise TransportClosed("the memory transport is not started")
        if address in self._inboxes:
            raise ConfigurationError(
                f"address {address!r} is already bound; agent names are unique"
            )
        self._inboxes[address] = inbox

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
        delivery = _MemoryDelivery(_isolate(envelope), None)
        try:
            inbox.put_nowait(delivery)
        except MailboxFull:
            if not block:
                raise
            await inbox.put(delivery)

    async def request(self, envelope: Envelope, timeout: float) -> Envelope:
        inbox = self._inbox(envelope)
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Envelope] = loop.create_future()
        timer = loop.call_later(timeout, _expire, fut, envelope, timeout)
        try:
            delivery = _MemoryDelivery(_isolate(envelope), fut)
            try:
                inbox.put_nowait(delivery)
            except MailboxFull:
                put = asyncio.ensure_future(inbox.put(delivery))
                try:
                    await asyncio.wait((put, fut), return_when=asyncio.FIRST_COMPLETED)
                finally:
                    if not put.done():
                        put.cancel()
            return await fut
        finally:
            timer.cancel()
