"""Control signals and private channels on core NATS (the ``Channels`` contract).

Subjects::

    <ns>.c.<agent>          control signals (cancel, credit); every instance of the
                            agent subscribes without a queue group, so a cancel
                            reaches whichever process runs the work
    <inbox>.ch.<id>         a private channel under the connection's inbox prefix
                            (the subjects its NATS user may subscribe to)

Core NATS keeps the order of messages from one publisher to one subscriber, which
is the order a channel promises. Frames posted to one channel in the same turn of
the event loop (a producer that yields faster than it waits) leave as one NATS
message, a JSON array of envelopes, when the poster next waits: that spares both
ends the per-message cost of the client, which is most of a small frame's cost,
and delays no frame past the turn that posted it. A batch holds at most
``BATCH_BYTES``; a poster with more than ``OUTBOX_BYTES`` waiting waits for them
to go.

A channel's subscription holds at most ``PENDING_LIMIT`` undelivered frames in
the client: the streams above it give credit for far fewer, so the limit is only
reached by a peer that ignores credit, and what it then drops shows as a gap in
the chunk sequence (a typed error).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import nats.errors
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from agentcomm.core.envelope import decode_envelope, decode_envelopes, encode_envelope, new_id
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
#: The most bytes of frames one NATS message on a channel carries (a batch).
BATCH_BYTES = 64 * 1024
#: The most bytes of frames waiting for the end of a turn, over all channels; a
#: poster past it waits until they are sent.
OUTBOX_BYTES = 1 << 20


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
    #: Frames posted this turn, by channel, and their size; the task that sends them.
    _outbox: dict[str, list[bytes]]
    _outbox_bytes: int
    _flusher: asyncio.Task[None] | None
    #: Why frames to a channel were lost, told to the next post there.
    _post_failures: dict[str, BaseException]

    def _init_channels(self) -> None:
        self._outbox, self._outbox_bytes, self._flusher = {}, 0, None
        self._post_failures = {}

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
            data = msg.data
            if data[:1] != b"[":
                env = self._decode_or_count(msg, "channel")
                if env is not None:
                    sink(env)
                return
            try:
                envs = decode_envelopes(data)
            except DecodeError as exc:
                self._count_malformed("channel", msg.subject, exc)
                return
            for env in envs:
                sink(env)

        try:
            sub = await nc.subscribe(address, cb=on_frame, pending_msgs_limit=PENDING_LIMIT)
        except (nats.errors.Error, OSError) as exc:
            raise nats_error(exc, "opening a channel") from exc
        return _NatsChannel(sub, address)

    async def post(self, address: str, envelope: Envelope) -> None:
        nc = self.client
        if nc.is_closed:
            raise nats_error(nats.errors.ConnectionClosedError(), f"posting to {address!r}")
        lost = self._post_failures.pop(address, None) if self._post_failures else None
        if lost is not None:
            raise nats_error(lost, f"posting to {address!r}") from lost
        data = encode_envelope(envelope)
        if self._outbox_bytes + len(data) > OUTBOX_BYTES and self._outbox:
            await self._drain_outbox()
        box = self._outbox.get(address)
        if box is None:
            self._outbox[address] = [data]
        else:
            box.append(data)
        self._outbox_bytes += len(data)
        if self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(self._send_outbox())

    async def _drain_outbox(self) -> None:
        """Wait until every frame posted so far has been handed to the client."""
        while (flusher := self._flusher) is not None:
            await asyncio.shield(flusher)

    async def _send_outbox(self) -> None:
        """The frames posted this turn, one NATS message per channel and batch."""
        try:
            while self._outbox:
                boxes, self._outbox, self._outbox_bytes = self._outbox, {}, 0
                for address, frames in boxes.items():
                    for data in _batches(frames):
                        try:
                            await self.client.publish(address, data)
                        except (nats.errors.Error, OSError, AgentCommError) as exc:
                            self._lost_frames(address, exc)
                            break
        finally:
            self._flusher = None

    def _lost_frames(self, address: str, exc: BaseException) -> None:
        logger.warning("frames to channel %s not sent: %s", address, exc)
        if len(self._post_failures) < 1024:  # told to the next post there (bounded)
            self._post_failures[address] = exc


def _batches(frames: list[bytes]) -> list[bytes]:
    """``frames`` as few messages of at most ``BATCH_BYTES`` (a lone frame as it is)."""
    if len(frames) == 1:
        return frames
    out: list[bytes] = []
    start, size = 0, 0
    for i, data in enumerate(frames):
        if size and size + len(data) + 1 > BATCH_BYTES:
            out.append(_join(frames[start:i]))
            start, size = i, 0
        size += len(data) + 1
    out.append(_join(frames[start:]))
    return out


def _join(frames: list[bytes]) -> bytes:
    return frames[0] if len(frames) == 1 else b"[" + b",".join(frames) + b"]"
