"""The transport contract: the few async operations every engine implements.

A transport moves envelopes; it knows nothing of handlers, schemas or policies,
which live in the runtime and the pattern modules above it. Three groups:

* **direct**: ``bind`` an agent's inbox to its address, ``send`` a notification,
  ``request`` and wait for the correlated response (``Delivery.reply`` answers);
* **key/value** (the blackboard): see :class:`KVStore`;
* **streams** (pub/sub): see :class:`EventLog`.

Engines: :mod:`agentcomm.transports.memory` (in-process, complete) and
:mod:`agentcomm.transports.nats` (NATS JetStream). The behaviour every engine must
show is written once, in :mod:`agentcomm.testing.contract`.
"""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Literal, Protocol

import msgspec

if TYPE_CHECKING:
    from ..envelope import Envelope

__all__ = ["Delivery", "EventLog", "Inbox", "KVStore", "Transport"]


class Delivery:
    """One envelope handed to an inbox, with the means to answer it.

    Transports subclass it and override :meth:`reply`; a notification's reply is a no-op.

    Example::

        async def on_delivery(d: Delivery) -> None:
            await d.reply(make_response(d.envelope))
    """

    __slots__ = ("envelope",)

    def __init__(self, envelope: Envelope) -> None:
        self.envelope = envelope

    async def reply(self, response: Envelope) -> None:
        """Send ``response`` back to the requester (no-op for notifications).

        Example::

            await delivery.reply(response_envelope)
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

    class Entry(msgspec.Struct, frozen=True, kw_only=True):
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

        The engine buffers at most ``max_pending`` undelivered entries for a slow
        consumer and never makes writers or other watchers wait for it. When the
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


class EventLog(abc.ABC):  # noqa: B024 - filled in by the pub/sub work
    """The stream part of the contract, used by pub/sub.

    Maps onto NATS JetStream streams and durable consumers: a retained log with
    sequence numbers, consumers with ack / nak-with-delay / term, start positions.
    """


class Transport(KVStore, EventLog, abc.ABC):
    """The contract of an engine. Subclass it and implement every abstract method.

    Example::

        class MyTransport(Transport):
            async def start(self) -> None: ...
            ...
        async with Runtime(transport=MyTransport()) as rt: ...
    """

    #: Short engine name shown in statistics and the CLI ("memory", "nats").
    name: str = "transport"

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
    async def request(self, envelope: Envelope, timeout: float) -> Envelope:
        """Deliver a request and return the response whose correlation id matches it.

        Raises NoResponders at once when nobody is bound, RequestTimeout when no
        response arrives within ``timeout`` seconds. Many requests may be in flight.
        """
