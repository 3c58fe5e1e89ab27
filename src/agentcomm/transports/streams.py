"""Values and handles of the stream contract (:class:`~.base.EventLog`), shared by engines.

They map one to one onto NATS JetStream: :class:`StreamConfig` is a stream's
configuration (limits retention, discard old, duplicate window), :class:`ConsumerConfig`
a durable pull consumer (filter subject, deliver policy, max ack pending, ack wait),
:class:`LogConsumer` a bound pull subscription and :class:`LogMessage` one delivered
message with ack / nak(delay) / term and its delivery count.

Subjects are ``.``-separated tokens; a filter may use ``*`` (exactly one token) and
``>`` (one or more tokens, last position only). Each stream has its own subject
namespace: the same subject in two streams never collides (an engine may prefix
subjects with the stream name, e.g. ``<stream>.<subject>`` on NATS).
"""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Literal

import msgspec

if TYPE_CHECKING:
    from agentcomm.core.envelope import Envelope
    from agentcomm.core.flow import Retention

__all__ = [
    "ConsumerConfig",
    "ConsumerInfo",
    "DeliverPolicy",
    "LogConsumer",
    "LogMessage",
    "StreamConfig",
    "StreamInfo",
    "pubsub_streams",
]

#: Where a new durable consumer starts: ``"new"`` (events appended after creation),
#: ``"all"`` (the oldest retained), ``"by_start_sequence"`` (``opt_start_seq``, or the
#: oldest retained if that was dropped), ``"by_start_time"`` (the first event stored at
#: or after ``opt_start_time``, a Unix time). JetStream: DeliverPolicy new/all/
#: by_start_sequence/by_start_time.
DeliverPolicy = Literal["new", "all", "by_start_sequence", "by_start_time"]


class StreamConfig(msgspec.Struct, frozen=True, kw_only=True):
    """A retained, bounded log of envelopes; every limit is enforced by discarding the oldest.

    ``max_msgs``, ``max_bytes`` and ``max_age`` (seconds) are JetStream's limits
    (retention "limits", discard "old"); ``duplicate_window`` (seconds) is the dedupe
    window of ``msg_id`` (JetStream's ``duplicate_window`` / ``Nats-Msg-Id``), cut to
    ``max_age`` when that is shorter (an id is remembered at most as long as messages
    live, JetStream's rule). All are required to be positive: nothing is unbounded.
    ``max_age=None`` means no age limit (the count and byte limits still bound the log).

    Example::

        StreamConfig(name="EVENTS", max_msgs=100_000, max_bytes=64 << 20, max_age=3600.0)
    """

    name: str
    max_msgs: int = 100_000
    max_bytes: int = 64 << 20
    max_age: float | None = None
    duplicate_window: float = 120.0


def pubsub_streams(retention: Retention) -> tuple[StreamConfig, StreamConfig]:
    """Pub/sub's event log ``EVENTS`` and dead-letter queue ``DLQ`` for ``retention``.

    The runtime ensures these; ``NatsTransport.setup()`` (an admin) creates the same.

    Example::

        events, dlq = pubsub_streams(Retention())
    """
    return (
        StreamConfig(
            name="EVENTS",
            max_msgs=retention.max_events,
            max_bytes=retention.max_bytes,
            max_age=retention.max_age,
            duplicate_window=retention.dedupe_window,
        ),
        StreamConfig(name="DLQ", max_msgs=retention.max_dead_letters),
    )


class StreamInfo(msgspec.Struct, frozen=True, kw_only=True):
    """State of a stream (JetStream ``StreamState``).

    ``first_seq``/``last_seq`` are the oldest retained and the newest sequence
    (``last_seq`` is 0 and ``first_seq`` 1 when nothing was ever appended).

    Example::

        info = await transport.stream_info("EVENTS"); print(info.messages, info.bytes)
    """

    name: str
    messages: int
    bytes: int
    first_seq: int
    last_seq: int


class ConsumerConfig(msgspec.Struct, frozen=True, kw_only=True):
    """A durable pull consumer of one stream (JetStream ``ConsumerConfig``, explicit ack).

    ``name`` is the durable name (letters, digits, ``_``, ``-``); consumers that open
    the same name share its messages (a consumer group). ``filter_subject`` selects
    the subjects delivered (wildcards allowed). ``max_ack_pending`` bounds messages
    delivered but not yet acked or terminated (including those waiting for a nak's
    redelivery). A message not acked within ``ack_wait`` seconds of its delivery
    (or of its last ``in_progress()``) is delivered again. With
    ``inactive_threshold``, the engine deletes the consumer once nobody used it for
    that many seconds (JetStream; an in-memory consumer lives as long as its
    transport object, so there it is not needed).

    Example::

        ConsumerConfig(name="billing__on_order", filter_subject="orders.*", deliver="new")
    """

    name: str
    filter_subject: str = ">"
    deliver: DeliverPolicy = "new"
    opt_start_seq: int | None = None
    opt_start_time: float | None = None
    max_ack_pending: int = 1000
    ack_wait: float = 30.0
    inactive_threshold: float | None = None


class ConsumerInfo(msgspec.Struct, frozen=True, kw_only=True):
    """State of a consumer (JetStream ``ConsumerInfo``).

    ``num_pending`` is the lag: matching messages not yet delivered.
    ``num_ack_pending`` counts delivered messages not yet acked or terminated, and
    ``num_redelivered`` those of them delivered more than once (JetStream's gauge:
    it drops again when they are settled).
    ``delivered_seq`` is the stream sequence of the last message delivered and
    ``ack_floor`` the sequence below which every message is acked.

    Example::

        info = await consumer.info(); print("lag", info.num_pending)
    """

    name: str
    stream: str
    filter_subject: str
    num_pending: int
    num_ack_pending: int
    num_redelivered: int
    delivered_seq: int
    ack_floor: int


class LogMessage(abc.ABC):
    """One delivered message; settle it exactly once with ack, nak or term.

    ``envelope`` is the stored envelope with ``sequence`` set to its stream sequence;
    ``num_delivered`` counts deliveries of this message to the consumer, this one
    included (1 on first delivery; JetStream's ``metadata.num_delivered``).
    Settling twice is a no-op. A message never settled is redelivered after the
    consumer's ``ack_wait`` or when the handle that fetched it is closed.

    Example::

        for msg in await consumer.fetch(10, timeout=1.0):
            await msg.ack()
    """

    __slots__ = ()

    envelope: Envelope
    sequence: int
    num_delivered: int
    #: Why the stored bytes are not an envelope, ``None`` normally. Then ``envelope``
    #: is a stand-in holding the raw bytes (:func:`agentcomm.envelope.invalid_frame`),
    #: and a subscription dead-letters it (reason ``invalid``) without a handler.
    invalid: str | None = None

    @abc.abstractmethod
    async def ack(self) -> None:
        """Done: the consumer never delivers this message again."""

    @abc.abstractmethod
    async def nak(self, delay: float | None = None) -> None:
        """Deliver this message again after ``delay`` seconds (at once when ``None``)."""

    @abc.abstractmethod
    async def term(self) -> None:
        """Never deliver this message again (used after its dead letter is stored)."""

    @abc.abstractmethod
    async def in_progress(self) -> None:
        """Still working: restart this message's ``ack_wait`` timer."""


class LogConsumer(abc.ABC):
    """A handle on a durable consumer, returned by ``EventLog.open_consumer``.

    Example::

        consumer = await transport.open_consumer("EVENTS", ConsumerConfig(name="c"))
        msgs = await consumer.fetch(100, timeout=0.5)
        await consumer.close()
    """

    __slots__ = ()

    name: str

    @abc.abstractmethod
    async def fetch(self, max_messages: int, timeout: float) -> list[LogMessage]:
        """Up to ``max_messages`` messages, waiting at most ``timeout`` seconds for the first.

        Returns an empty list on timeout (never raises it). Messages come in stream
        order, except redeliveries, which come as soon as they are due. Never
        delivers more than ``max_ack_pending`` unsettled messages over all handles
        of this consumer; once at the limit, fetch waits (up to ``timeout``).
        """

    @abc.abstractmethod
    async def info(self) -> ConsumerInfo:
        """The consumer's current state (lag, pending acks, positions)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop using this handle; the durable consumer and its position stay.

        Messages fetched through this handle and not settled become due for
        redelivery at once (JetStream would redeliver them after ``ack_wait``;
        engines may do either). Idempotent.
        """
