"""The key/value part of the transport contract (the blackboard's store): :class:`KVStore`.

An engine implements every method; the behaviour is checked by the blackboard
contract suite (``agentcomm.testing.contract.blackboard``) on every engine.
"""

from __future__ import annotations

import abc
from typing import Literal

import msgspec

__all__ = ["KVStore"]


class KVStore(abc.ABC):
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

    Every ``kv_*`` method is abstract: an engine that lacks one cannot be created.

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

    @abc.abstractmethod
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

    @abc.abstractmethod
    async def kv_get(self, bucket: str, key: str) -> KVStore.Entry | None:
        """The latest entry of ``key``, or ``None`` when it is absent.

        Absent means: never written, or its latest entry is a delete or expiry marker,
        or its TTL has passed (an expired key reads as absent even if the engine has
        not yet written the expiry marker). Never returns a marker.

        Example::

            entry = await kv.kv_get("board", "task.1")
        """

    @abc.abstractmethod
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

    @abc.abstractmethod
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

    @abc.abstractmethod
    async def kv_keys(self, bucket: str, prefix: str = "") -> list[str]:
        """The keys selected by ``prefix`` that are present now (no markers), any order.

        Example::

            keys = await kv.kv_keys("board", "task.")
        """

    @abc.abstractmethod
    async def kv_entries(self, bucket: str, prefix: str = "") -> list[KVStore.Entry]:
        """The latest live entry of every present key selected by ``prefix``, any order.

        Example::

            for entry in await kv.kv_entries("board", "task."):
                print(entry.key, entry.value)
        """

    @abc.abstractmethod
    async def kv_history(self, bucket: str, key: str) -> list[KVStore.Entry]:
        """The retained entries of ``key``, markers included, oldest first.

        At most the bucket's ``history`` entries; an empty list for an unknown key.

        Example::

            revisions = [e.revision for e in await kv.kv_history("board", "task.1")]
        """

    @abc.abstractmethod
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
