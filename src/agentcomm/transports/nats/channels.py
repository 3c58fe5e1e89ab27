"""Control signals and private channels on core NATS (the ``Channels`` contract).

Subjects::

    <ns>.c.<agent>          control signals (cancel, credit); every instance of the
                            agent subscribes without a queue group, so a cancel
                            reaches whichever process runs the work
    <inbox>.ch.<id>         a private channel under the connection's inbox prefix
                            (the subjects its NATS user may subscribe to)

Core NATS keeps the order of messages from one publisher to one subscriber, which
is the order a channel promises. A channel's subscription holds at most
``pending_limit`` undelivered frames in the client: the streams above it give
credit for far fewer, so the limit is only reached by a peer that ignores credit,
and what it then drops shows as a gap in the chunk sequence (a typed error).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import nats.errors
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from agentcomm.core.envelope import decode_envelope, encode_envelope, new_id
from agentcomm.core.errors import AgentCommError, DecodeError
from agentcomm.transports.channels import Channel, Sink
from agentcomm.transports.nats.errors import nats_error

if TYPE_CHECKING:
    from nats.aio.client import Client

    from agentcomm.core.envelope import Envelope
    from agentcomm.transports.base import Inbox

__all__ = ["NatsChannels"]

logger = logging.getLogger("agentcomm.nats")

#: Undelivered frames a channel's subscription may hold in the client.
PENDING_LIMIT = 65_536


class _NatsChannel(Channel):
    __slots__ = ("_sub", "address")

    def __init__(self, sub: Subscription, address: str) -> None:
        self._sub = sub
        self.address = address

    async def close(self) -> None:
        sub, self._sub = self._sub, None  # type: ignore[assignment]
        if sub is not None:
            try:
                await sub.unsubscribe()
            except (nats.errors.Error, OSError) as exc:
                logger.debug("closing channel %s: %s", self.address, exc)


class NatsChannels:
    """Signals and channels of :class:`~agentcomm.transports.nats.NatsTransport`.

    Example::

        ch = await transport.open_channel(frames.append)
        await transport.post(ch.address, chunk)
    """

    namespace: str

    if TYPE_CHECKING:  # provided by NatsTransport

        @property
        def client(self) -> Client: ...

        def _count_malformed(self, kind: str, where: str, error: object) -> None: ...

    def _decode_or_count(self, msg: Msg, kind: str) -> Envelope | None:
        try:
            return decode_envelope(msg.data)
        except DecodeError as exc:
            self._count_malformed(kind, msg.subject, exc)
            return None

    async def _bind_control(self, address: str, inbox: Inbox) -> Subscription:
        """Subscribe ``address``'s control subject (called by ``bind``)."""

        async def on_signal(msg: Msg) -> None:
            env = self._decode_or_count(msg, "control")
            if env is not None:
                try:
                    inbox.control(env)
                except Exception:
                    logger.exception("control frame %s for %s failed", env.kind, address)

        subject = f"{self.namespace}.c.{address}"
        try:
            return await self.client.subscribe(subject, cb=on_signal)
        except (nats.errors.Error, OSError) as exc:
            raise nats_error(exc, f"binding agent {address!r}") from exc

    async def signal(self, envelope: Envelope) -> None:
        to = envelope.recipient or ""
        try:
            await self.client.publish(f"{self.namespace}.c.{to}", encode_envelope(envelope))
        except (nats.errors.Error, OSError, AgentCommError) as exc:
            raise nats_error(exc, f"signal to {to!r}") from exc

    async def open_channel(self, sink: Sink) -> Channel:
        nc = self.client
        address = f"{bytes(nc._inbox_prefix).decode()}.ch.{new_id()}"

        async def on_frame(msg: Msg) -> None:
            env = self._decode_or_count(msg, "channel")
            if env is not None:
                sink(env)

        try:
            sub = await nc.subscribe(address, cb=on_frame, pending_msgs_limit=PENDING_LIMIT)
        except (nats.errors.Error, OSError) as exc:
            raise nats_error(exc, "opening a channel") from exc
        return _NatsChannel(sub, address)

    async def post(self, address: str, envelope: Envelope) -> None:
        try:
            await self.client.publish(address, encode_envelope(envelope))
        except (nats.errors.Error, OSError, AgentCommError) as exc:
            raise nats_error(exc, f"posting to {address!r}") from exc
