"""The transport contract: the few async operations every engine implements.

A transport moves envelopes; it knows nothing of handlers, schemas or policies,
which live in the runtime and the pattern modules above it. Three groups:

* **direct**: ``bind`` an agent's inbox to its address, ``send`` a notification,
  ``request`` and wait for the correlated response (``Delivery.reply`` answers);
* **key/value** (the blackboard): see :class:`KVStore`;
* **streams** (pub/sub): see :class:`EventLog`;
* **channels** (long-running work: cancel and credit signals, private channels
  for chunks and progress): see :class:`~agentcomm.transports.channels.Channels`.

Engines: :mod:`agentcomm.transports.memory` (in-process, complete) and
:mod:`agentcomm.transports.nats` (NATS JetStream). The behaviour every engine must
show is written once, in :mod:`agentcomm.testing.contract`.
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Literal, Protocol

import msgspec

from agentcomm.transports.channels import Channels

if TYPE_CHECKING:
    from agentcomm.core.deadlines import Expirable
    from agentcomm.core.envelope import Envelope
    from agentcomm.transports.streams import ConsumerConfig, LogConsumer, StreamConfig, StreamInfo

__all__ = ["Delivery", "EventLog", "Inbox", "KVStore", "Transport"]


class Delivery:
    """One envelope handed to an inbox, with the means to answer it.

    Transports subclass it and override :meth:`reply`.

    Example::

        def on_delivery(d: Delivery) -> None:
            pending = d.reply(make_response(d.envelope))
            if pending is not None:
                await pending
    """

    __slots__ = ("envelope", "runner")

    #: True when the engine itself calls ``runner.expire()`` at the envelope's
    #: deadline (the in-process engine does, for requests). Otherwise the agent
    #: arms its own timer to stop a handler that outlives the caller's deadline.
    expires: bool = False

    def __init__(self, envelope: Envelope) -> None:
        self.envelope = envelope
        #: Set by the agent while a handler runs for this delivery; has ``expire()``.
        self.runner: Expirable | None = None

    def reply(self, response: Envelope) -> Awaitable[None] | None:
        """Send ``response`` back to the requester (nothing for notifications).

        Returns ``None`` when the reply is already on its way (in-process), or an
        awaitable that the caller must await (network engines). A reply whose
        requester has gone (timed out, cancelled) is dropped by the engine.

        Example::

            if (pending := delivery.reply(response_envelope)) is not None:
                await pending
        """
        return None


class Inbox(Protocol):
    """What a transport delivers into: an agent's bounded mailbox (runtime side).

    Example::

        inbox.put_nowait(delivery)   # raises MailboxFull when full
        await inbox.put(delivery)    # waits for room
    """

    @property
    def capacity(self) -> int:
        """Maximum number of queued deliveries."""
        ...

    def put_nowait(self, delivery: Delivery) -> None:
        """Queue a delivery or raise :class:`~agentcomm.errors.MailboxFull` at once."""
        ...

    async def put(self, delivery: Delivery) -> None:
        """Queue a delivery, waiting for room (the caller bounds the wait)."""
        ...

    def control(self, envelope: Envelope) -> None:
        """Act on a control envelope (cancel, credit) at once, past the queue."""
        ...


class KVStore(abc.ABC):  # noqa: B024 - abstract in spirit, see below
    """The key/value part of the contract, used by the blackboard: a versioned byte store.

    Shaped after NATS JetStream key/value so that engine maps onto it one to one:
    a *bucket* is a KV bucket (a stream ``KV_<bucket>``), a key is a subject token
    path, a revision is the stream sequence of the message that stored the change.

    **Keys** are 1-255 characters: tokens of ``A-Z a-z 0-9 _ - =`` separated by single
    dots (``research.q1.findings``), never starting or ending with a dot. The caller
    (the blackboard) validates keys; engines may assume they are valid, which makes
    every key a valid NATS KV key and a valid subject suffix.

    **Prefixes** select keys for :meth:`kv_keys`, :meth:`kv_entries` and
    :meth:`kv_watch`, in exactly one of three forms, each one NATS subject filter:

    * ``""``: every key in the bucket (filter ``>``);
    * ``"a.b."`` (ends with a dot): every key strictly below ``a.b``, i.e. every key
      that starts with ``"a.b."`` (filter ``a.b.>``);
    * ``"a.b"`` (a key): that key alone (filter ``a.b``).

    **Revisions** are positive integers that strictly increase with every change
    (put, delete marker, expiry marker) within a bucket. They need not be
    consecutive, per key or per bucket (JetStream revisions are stream sequences).

    **Markers**: :meth:`kv_delete` and TTL expiry do not erase a key's history; they
    append a marker entry (operation ``"delete"`` or ``"expire"``, empty value) with
    its own revision. A key whose latest entry is a marker is *absent*.

    **History**: each key keeps its most recent ``history`` entries (markers
    included), the bucket's ``history`` setting given to :meth:`kv_open`.

    Every engine overrides every ``kv_*`` method (they raise NotImplementedError only
    so that engines still being written can be created).

    Example::

        await kv.kv_open("board", history=16)
        rev = await kv.kv_put("board", "task.1", b'"todo"')
        rev2 = await kv.kv_put("board", "task.1", b'"done"', expected_revision=rev)
        entry = await kv.kv_get("board", "task.1")
        assert entry is not None and entry.value == b'"done"' and entry.revision == rev2
    """

    #: The shortest per-key TTL the engine honours, in seconds. Shorter TTLs are
    #: refused by the blackboard with ConfigurationError (NATS message TTLs are 1s).
    min_ttl: float = 0.0

    class Entry(msgspec.Struct, frozen=True, kw_only=True, gc=False):
        """One stored change of a key: a value, or a delete/expire marker.

        ``value`` is the stored bytes (``b""`` for markers), ``revision`` the
        bucket-wide revision of this change, ``operation`` one of ``"put"``,
        ``"delete"`` or ``"expire"``, ``timestamp`` the Unix time (seconds) at which
        the engine stored it. NATS: ``Entry.value``, ``.revision``, the ``KV-Operation``
        header (``DEL`` -> delete; ``PURGE`` or a ``Nats-Marker-Reason: MaxAge``
        marker -> expire) and the message timestamp.

        Example::

            KVStore.Entry(key="a.b", value=b"1", revision=7, operation="put", timestamp=0.0)
        """

        key: str
        value: bytes
        revision: int
        operation: Literal["put", "delete", "expire"]
        timestamp: float

    class Watcher(abc.ABC):
        """An open watch: an async iterator of entries, closed with :meth:`aclose`.

        It yields, in this order: the *snapshot* (if asked for: the latest entry of
        each matching key at the moment the watch opened, markers included, in
        revision order), then ``None`` exactly once (the snapshot is complete; yielded
        at once when no snapshot was asked for), then every later change of a
        matching key as it happens, in revision order. Nothing is lost or repeated
        between snapshot and live changes.

        The engine buffers at most ``max_pending`` undelivered live entries for a
        slow consumer (the snapshot is not counted: it is the state, not a backlog)
        and never makes writers or other watchers wait for it. When the
        buffer would overflow, the engine drops the buffer, sets :attr:`lagged` to
        True and ends the iteration (``StopAsyncIteration`` on the next read); the
        consumer then opens a new watch with a snapshot to catch up. An engine that
        can replay from the server (JetStream ordered consumers) may instead just
        fall behind and never lag, so long as it buffers at most ``max_pending``.

        Iteration also ends (without ``lagged``) after :meth:`aclose`, which may be
        called from any task, any number of times, and wakes a reader blocked in
        ``__anext__``. Engine failures raise :class:`~agentcomm.errors.TransportError`.

        Example::

            w = await kv.kv_watch("board", "task.", snapshot=True, max_pending=256)
            try:
                async for entry in w:
                    if entry is None:
                        print("snapshot done")
                    else:
                        print(entry.key, entry.operation, entry.revision)
            finally:
                await w.aclose()
            if w.lagged:
                ...  # open a new watch with snapshot=True
        """

        #: True once the engine ended the iteration because the consumer fell behind.
        lagged: bool = False

        def __aiter__(self) -> KVStore.Watcher:
            return self

        @abc.abstractmethod
        async def __anext__(self) -> KVStore.Entry | None:
            """The next snapshot entry, ``None`` (end of snapshot) or live change."""

        @abc.abstractmethod
        async def aclose(self) -> None:
            """Stop the watch and release its resources; idempotent."""

    async def kv_open(self, bucket: str, *, history: int) -> None:
        """Create ``bucket`` if it does not exist, keeping ``history`` entries per key.

        Idempotent: opening an existing bucket keeps its data (and its stored history
        setting when the engine cannot change it). ``bucket`` is 1-64 characters of
        ``A-Z a-z 0-9 _ -``; ``history`` is 1-64 (the NATS maximum). The bucket must
        support per-key TTLs with expiry markers (NATS: ``allow_msg_ttl`` and
        ``subject_delete_marker_ttl`` on the stream). Every other method may assume
        the bucket was opened.

        Example::

            await kv.kv_open("board", history=16)
        """
        raise NotImplementedError(f"{type(self).__name__} has no key/value support yet")

    async def kv_get(self, bucket: str, key: str) -> KVStore.Entry | None:
        """The latest entry of ``key``, or ``None`` when it is absent.

        Absent means: never written, or its latest entry is a delete or expiry marker,
        or its TTL has passed (an expired key reads as absent even if the engine has
        not yet written the expiry marker). Never returns a marker.

        Example::

            entry = await kv.kv_get("board", "task.1")
        """
        raise NotImplementedError(f"{type(self).__name__} has no key/value support yet")

    async def kv_put(
        self,
        bucket: str,
        key: str,
        value: bytes,
        *,
        expected_revision: int | None = None,
        create_only: bool = False,
        ttl: float | None = None,
    ) -> int:
        """Store ``value`` as the new latest entry of ``key``; return its revision.

        * neither condition: store unconditionally (last writer wins);
        * ``expected_revision=r`` (``r >= 1``): store only if the key's latest entry,
          marker or not, has revision ``r``; otherwise raise
          :class:`~agentcomm.errors.RevisionConflict` (NATS: the
          ``Nats-Expected-Last-Subject-Sequence`` header, error 10071);
        * ``create_only=True``: store only if the key is absent (never written, or
          its latest entry is a marker, or it expired); otherwise raise
          :class:`~agentcomm.errors.KeyExists` (NATS: ``KeyValue.create``, which
          retries on the marker's revision).

        Both errors carry in ``current`` the key's latest live :class:`Entry` read
        right after the refusal (``None`` if it is absent by then).

        ``ttl`` (seconds, ``>= min_ttl``) makes this revision expire: after ``ttl``
        the key reads as absent and the engine appends an ``"expire"`` marker that
        watchers receive. A later put without ``ttl`` does not expire.

        Example::

            rev = await kv.kv_put("board", "lock.a", b"me", create_only=True, ttl=30)
        """
        raise NotImplementedError(f"{type(self).__name__} has no key/value support yet")

    async def kv_delete(
        self, bucket: str, key: str, *, expected_revision: int | None = None
    ) -> int:
        """Append a ``"delete"`` marker for ``key`` and return the marker's revision.

        The key then reads as absent; its earlier entries stay in its history. The
        marker is written even when the key is already absent. With
        ``expected_revision=r``, delete only if the latest entry has revision ``r``,
        otherwise raise :class:`~agentcomm.errors.RevisionConflict` as in
        :meth:`kv_put`.

        Example::

            rev = await kv.kv_delete("board", "task.1")
        """
        raise NotImplementedError(f"{type(self).__name__} has no key/value support yet")

    async def kv_keys(self, bucket: str, prefix: str = "") -> list[str]:
        """The keys selected by ``prefix`` that are present now (no markers), any order.

        Example::

            keys = await kv.kv_keys("board", "task.")
        """
        raise NotImplementedError(f"{type(self).__name__} has no key/value support yet")

    async def kv_entries(self, bucket: str, prefix: str = "") -> list[KVStore.Entry]:
        """The latest live entry of every present key selected by ``prefix``, any order.

        Example::

            for entry in await kv.kv_entries("board", "task."):
                print(entry.key, entry.value)
        """
        raise NotImplementedError(f"{type(self).__name__} has no key/value support yet")

    async def kv_history(self, bucket: str, key: str) -> list[KVStore.Entry]:
        """The retained entries of ``key``, markers included, oldest first.

        At most the bucket's ``history`` entries; an empty list for an unknown key.

        Example::

            revisions = [e.revision for e in await kv.kv_history("board", "task.1")]
        """
        raise NotImplementedError(f"{type(self).__name__} has no key/value support yet")

    async def kv_watch(
        self, bucket: str, prefix: str = "", *, snapshot: bool = True, max_pending: int = 1024
    ) -> KVStore.Watcher:
        """Open a :class:`Watcher` on the keys selected by ``prefix``.

        Returns once the watch is registered: every change stored after this call
        returns is delivered (or, with ``snapshot``, is in the snapshot or after it).
        See :class:`Watcher` for the order, the snapshot marker and the lag policy.

        Example::

            watcher = await kv.kv_watch("board", "", snapshot=False)
        """
        raise NotImplementedError(f"{type(self).__name__} has no key/value support yet")


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
    async def append(self, stream: str, envelope: Envelope, *, msg_id: str | None = None) -> int:
        """Store ``envelope`` under subject ``envelope.topic``; return its sequence number.

        The stored copy has ``sequence`` set to that number (consumers and reads see
        it). With ``msg_id``, an append whose id was already appended within the
        stream's ``duplicate_window`` stores nothing and returns the sequence of the
        first one (JetStream: the ``Nats-Msg-Id`` header; PubAck ``duplicate``).
        Appending may drop the oldest messages to honour the limits. Raises
        ConfigurationError for a stream never ensured, TransportError when the
        engine fails.
        """

    async def append_checked(
        self, stream: str, envelope: Envelope, *, msg_id: str | None = None
    ) -> tuple[int, bool]:
        """:meth:`append`, also saying whether it was a duplicate: ``(sequence, duplicate)``.

        ``duplicate`` is True when ``msg_id`` was already stored within the
        stream's ``duplicate_window`` (nothing was stored; JetStream: PubAck
        ``duplicate``). Engines override it; this default never reports one.

        Example::

            seq, duplicate = await t.append_checked("EVENTS", envelope, msg_id="order-17")
        """
        return await self.append(stream, envelope, msg_id=msg_id), False

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


class Transport(KVStore, EventLog, Channels, abc.ABC):
    """The contract of an engine. Subclass it and implement every abstract method.

    Example::

        class MyTransport(Transport):
            async def start(self) -> None: ...
            ...
        async with Runtime(transport=MyTransport()) as rt: ...
    """

    #: Short engine name shown in statistics and the CLI ("memory", "nats").
    name: str = "transport"
    #: Capability: other processes reach the same engine (a broker), so the runtime
    #: announces its agents there (presence). In-process engines leave it False.
    shared: bool = False

    # -- lifecycle ----------------------------------------------------------
    @abc.abstractmethod
    async def start(self) -> None:
        """Connect; called once by the runtime when it starts."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release every resource; called once by the runtime when it stops."""

    # -- direct messages ----------------------------------------------------
    @abc.abstractmethod
    async def bind(self, address: str, inbox: Inbox) -> None:
        """Deliver envelopes addressed to ``address`` into ``inbox`` from now on.

        Raises ConfigurationError if the address is already bound in this transport.
        """

    def bind_nowait(self, address: str, inbox: Inbox) -> bool:
        """Bind at once when the engine can without waiting; return False otherwise.

        The default (network engines) returns False and the runtime awaits
        :meth:`bind` instead.
        """
        return False

    @abc.abstractmethod
    async def unbind(self, address: str) -> None:
        """Stop delivering to ``address``; later sends get NoResponders."""

    @abc.abstractmethod
    async def send(self, envelope: Envelope, *, block: bool = True) -> None:
        """Deliver a notification to ``envelope.recipient``.

        Raises NoResponders at once when nobody is bound to the recipient, MailboxFull
        when its mailbox is full and ``block`` is false; waits for room otherwise (the
        caller bounds the wait with its deadline).
        """

    @abc.abstractmethod
    def request(self, envelope: Envelope, timeout: float) -> Awaitable[Envelope]:
        """Deliver a request; the awaitable resolves to the correlated response.

        A plain method returning an awaitable (a coroutine, or a future on the hot
        in-process path), so callers write ``await transport.request(env, t)``.
        Raises NoResponders at once (from the call or the awaitable) when nobody is
        bound, RequestTimeout when no response arrives within ``timeout`` seconds.
        Many requests may be in flight at once, each answered by its own correlation.
        """
