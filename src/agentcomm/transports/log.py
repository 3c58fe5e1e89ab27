"""The event-log part of the transport contract (pub/sub's streams): :class:`EventLog`.

An engine implements every method; the behaviour is checked by the pub/sub
contract suites (``agentcomm.testing.contract.pubsub*``) on every engine.
"""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agentcomm.core.envelope import Envelope
    from agentcomm.transports.streams import ConsumerConfig, LogConsumer, StreamConfig, StreamInfo

__all__ = ["EventLog"]


class EventLog(abc.ABC):
    """The stream part of the contract, used by pub/sub; maps 1:1 onto NATS JetStream.

    A *stream* is a retained, bounded log of envelopes (a JetStream stream with
    limits retention and discard-old); every appended envelope gets the next
    *sequence* number (1, 2, ...; never reused, gaps appear when old messages are
    dropped or deleted). A *consumer* is a durable pull consumer with explicit acks
    (a JetStream durable consumer). Values and handles are in
    :mod:`agentcomm.transports.streams`. Subjects are ``.``-separated tokens, filters
    may use ``*`` (one token) and ``>`` (the rest); each stream has its own subject
    namespace.

    Policies (retries, backoff, TTL, per-key order, dead letters, rate limits,
    metrics) are *not* here: :mod:`agentcomm.pubsub` builds them on these methods,
    so they behave the same on every engine.

    Every engine implements every method below.

    Example::

        await t.ensure_stream(StreamConfig(name="EVENTS", max_msgs=10_000))
        seq = await t.append("EVENTS", envelope, msg_id="order-17")
        consumer = await t.open_consumer("EVENTS", ConsumerConfig(name="c", deliver="all"))
        for msg in await consumer.fetch(10, timeout=1.0):
            await msg.ack()
    """

    @abc.abstractmethod
    async def ensure_stream(self, config: StreamConfig) -> StreamInfo:
        """Create the stream, or update the limits of an existing one; return its state.

        Idempotent. Lowering a limit drops the oldest messages at once. JetStream:
        ``add_stream`` / ``update_stream`` with retention=limits, discard=old,
        ``max_msgs``, ``max_bytes``, ``max_age``, ``duplicate_window``.
        """

    @abc.abstractmethod
    async def append(
        self,
        stream: str,
        envelope: Envelope,
        *,
        msg_id: str | None = None,
        subject: str | None = None,
    ) -> int:
        """Store ``envelope`` under ``subject`` (default ``envelope.topic``); return its sequence.

        The stored copy has ``sequence`` set to that number (consumers and reads see
        it). With ``msg_id``, an append whose id was already appended within the
        stream's ``duplicate_window`` stores nothing and returns the sequence of the
        first one (JetStream: the ``Nats-Msg-Id`` header; PubAck ``duplicate``).
        Appending may drop the oldest messages to honour the limits. Raises
        ConfigurationError for a stream never ensured, TransportError when the
        engine fails.
        """

    @abc.abstractmethod
    async def append_checked(
        self,
        stream: str,
        envelope: Envelope,
        *,
        msg_id: str | None = None,
        subject: str | None = None,
    ) -> tuple[int, bool]:
        """:meth:`append`, also saying whether it was a duplicate: ``(sequence, duplicate)``.

        ``duplicate`` is True when ``msg_id`` was already stored within the
        stream's ``duplicate_window`` (nothing was stored; JetStream: PubAck
        ``duplicate``).

        Example::

            seq, duplicate = await t.append_checked("EVENTS", envelope, msg_id="order-17")
        """

    @abc.abstractmethod
    async def stream_info(self, stream: str) -> StreamInfo:
        """The stream's message count, bytes and first/last sequence.

        Raises ConfigurationError for a stream never ensured.
        """

    @abc.abstractmethod
    async def get_message(self, stream: str, sequence: int) -> Envelope | None:
        """The retained envelope with that sequence (``sequence`` set), or ``None``.

        JetStream: direct get / ``get_msg`` by sequence.
        """

    @abc.abstractmethod
    async def read_messages(
        self, stream: str, *, start_seq: int = 1, limit: int = 100, filter_subject: str = ">"
    ) -> list[Envelope]:
        """Up to ``limit`` retained envelopes matching ``filter_subject`` with sequence
        >= ``start_seq``, oldest first, without creating a consumer or moving one.

        JetStream: direct get with ``next_by_subject`` (or an ephemeral ordered consumer).
        """

    @abc.abstractmethod
    async def delete_message(self, stream: str, sequence: int) -> bool:
        """Remove one message; True if it was there. Consumers skip it from then on.

        JetStream: ``delete_msg``.
        """

    @abc.abstractmethod
    async def open_consumer(self, stream: str, config: ConsumerConfig) -> LogConsumer:
        """Create the durable consumer ``config.name`` if absent, then bind a handle to it.

        On an existing consumer the position and pending acks are kept (the start
        position only applies at creation); ``max_ack_pending`` and ``ack_wait`` are
        updated; a different ``filter_subject`` raises ConfigurationError (delete the
        consumer first). Several handles may be open on one consumer (a consumer
        group): each message goes to one of them. JetStream: ``add_consumer`` with
        ack_policy explicit + ``pull_subscribe_bind``.
        """

    @abc.abstractmethod
    async def delete_consumer(self, stream: str, name: str) -> bool:
        """Delete a durable consumer and its state; True if it existed.

        Open handles on it then fetch nothing. JetStream: ``delete_consumer``.
        """
