"""The key/value half of the in-memory transport (see :class:`~.base.KVStore`).

A real engine, not a mock: bucket-wide revisions, compare-and-set, delete and expiry
markers, bounded per-key history, per-key TTLs that expire on a timer, and watches
with a bounded buffer per watcher that lag (never block writers) when it overflows.
Everything runs on the event loop without suspending, so each operation is atomic.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

from agentcomm.core.errors import ConfigurationError, KeyExists, RevisionConflict
from agentcomm.core.limits import ENGINE_MAX_PAYLOAD, too_large
from agentcomm.transports.base import KVStore

__all__ = ["MemoryKV"]

Entry = KVStore.Entry
_now = time.time

#: Deleted or expired keys whose history a bucket keeps; beyond this the oldest
#: one is forgotten entirely (NATS keeps markers until ``purge_deletes``).
MAX_ABSENT_KEYS = 10_000


def _selects(prefix: str, key: str) -> bool:
    """Whether ``prefix`` (``""``, ``"a.b."`` or a key) selects ``key``."""
    if not prefix:
        return True
    if prefix[-1] == ".":
        return key.startswith(prefix)
    return key == prefix


class _MemoryWatcher(KVStore.Watcher):
    __slots__ = (
        "_bucket",
        "_buffer",
        "_closed",
        "_max",
        "_snapshot",
        "_waiter",
        "lagged",
        "prefix",
    )

    def __init__(self, bucket: _Bucket, prefix: str, max_pending: int) -> None:
        self._bucket = bucket
        self.prefix = prefix
        self._max = max_pending
        # The snapshot (the state, not a backlog) is kept apart from the bounded buffer.
        self._snapshot: deque[Entry | None] = deque()
        self._buffer: deque[Entry] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        self.lagged = False

    def _push(self, entry: Entry) -> None:
        # Called by writers: never waits. Overflow ends the watch with ``lagged``.
        if self._closed:
            return
        if len(self._buffer) >= self._max:
            self.lagged = True
            self._stop()
            return
        self._buffer.append(entry)
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    def _stop(self) -> None:
        self._closed = True
        self._snapshot.clear()
        self._buffer.clear()
        self._bucket.watchers.discard(self)
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    async def __anext__(self) -> Entry | None:
        while True:
            if self._snapshot:
                return self._snapshot.popleft()
            if self._buffer:
                return self._buffer.popleft()
            if self._closed:
                raise StopAsyncIteration
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    async def aclose(self) -> None:
        self._stop()


class _Bucket:
    __slots__ = ("absent", "expiry", "history", "keys", "name", "revision", "watchers")

    def __init__(self, name: str, history: int) -> None:
        self.name = name
        self.history = history
        self.revision = 0
        #: key -> retained entries, oldest first (the last one is the latest).
        self.keys: dict[str, deque[Entry]] = {}
        #: key -> (loop deadline, timer) for the latest entry when it has a TTL.
        self.expiry: dict[str, tuple[float, asyncio.TimerHandle]] = {}
        self.watchers: set[_MemoryWatcher] = set()
        #: keys whose latest entry is a marker, oldest first (bounded).
        self.absent: dict[str, None] = {}

    def append(self, key: str, value: bytes, operation: str) -> Entry:
        self.revision = revision = self.revision + 1
        entry = Entry(
            key=key,
            value=value,
            revision=revision,
            operation=operation,  # type: ignore[arg-type]
            timestamp=_now(),
        )
        entries = self.keys.get(key)
        if entries is None:
            entries = self.keys[key] = deque(maxlen=self.history)
        entries.append(entry)
        absent = self.absent
        if operation == "put":
            if absent:
                absent.pop(key, None)
        else:
            absent.pop(key, None)
            absent[key] = None
            if len(absent) > MAX_ABSENT_KEYS:
                oldest = next(iter(absent))
                del absent[oldest]
                del self.keys[oldest]
        if self.watchers:
            for w in list(self.watchers):
                if _selects(w.prefix, key):
                    w._push(entry)
        return entry

    def latest(self, key: str) -> Entry | None:
        """The key's latest entry, marker or not, expiring it first when its TTL passed."""
        entries = self.keys.get(key)
        if entries is None:
            return None
        if self.expiry:
            exp = self.expiry.get(key)
            if exp is not None and asyncio.get_running_loop().time() >= exp[0]:
                self.expire(key, entries[-1].revision)
        return entries[-1]

    def live(self, key: str) -> Entry | None:
        entry = self.latest(key)
        return entry if entry is not None and entry.operation == "put" else None

    def clear_ttl(self, key: str) -> None:
        exp = self.expiry.pop(key, None)
        if exp is not None:
            exp[1].cancel()

    def expire(self, key: str, revision: int) -> None:
        entries = self.keys.get(key)
        if entries is None or entries[-1].revision != revision:
            return  # changed since; that change cleared the TTL already
        self.clear_ttl(key)
        self.append(key, b"", "expire")


class MemoryKV:
    """In-memory key/value buckets for the blackboard (the :class:`~.base.KVStore` part).

    Example::

        kv = MemoryTransport()
        await kv.kv_open("board", history=8)
        rev = await kv.kv_put("board", "a.b", b"1")
    """

    #: The largest value stored (see :class:`MemoryTransport`).
    max_payload: int = ENGINE_MAX_PAYLOAD

    min_ttl: float = 0.001

    def __init__(self) -> None:
        self._buckets: dict[str, _Bucket] = {}

    def _bucket(self, name: str) -> _Bucket:
        b = self._buckets.get(name)
        if b is None:
            raise ConfigurationError(f"bucket {name!r} is not open; call kv_open({name!r}) first")
        return b

    async def kv_open(self, bucket: str, *, history: int) -> None:
        """See :meth:`KVStore.kv_open`."""
        if not 1 <= history <= 64:
            raise ConfigurationError(f"history must be between 1 and 64, got {history}")
        if bucket not in self._buckets:
            self._buckets[bucket] = _Bucket(bucket, history)

    async def kv_get(self, bucket: str, key: str) -> Entry | None:
        """See :meth:`KVStore.kv_get`."""
        b = self._buckets.get(bucket) or self._bucket(bucket)
        entries = b.keys.get(key)
        if entries is None:
            return None
        if b.expiry and key in b.expiry:
            return b.live(key)
        entry = entries[-1]
        return entry if entry.operation == "put" else None

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
        """See :meth:`KVStore.kv_put`."""
        if len(value) > self.max_payload:
            raise too_large(f"value of {key!r}", len(value), self.max_payload)
        b = self._buckets.get(bucket) or self._bucket(bucket)
        expiring = key in b.expiry
        if expected_revision is not None or create_only or expiring:
            if expiring:
                latest = b.latest(key)  # records an expiry that is due
            else:
                entries = b.keys.get(key)
                latest = entries[-1] if entries else None
            if create_only and latest is not None and latest.operation == "put":
                raise KeyExists(key, None, latest)
            if expected_revision is not None and (
                latest is None or latest.revision != expected_revision
            ):
                raise RevisionConflict(key, expected_revision, b.live(key))
            if expiring:
                b.clear_ttl(key)  # this write replaces the revision that had the TTL
        if ttl is not None or b.watchers:
            entry = b.append(key, value, "put")
            if ttl is not None:
                loop = asyncio.get_running_loop()
                handle = loop.call_later(ttl, b.expire, key, entry.revision)
                b.expiry[key] = (loop.time() + ttl, handle)
            return entry.revision
        # The hot path (no watcher, no TTL): Bucket.append, inlined.
        b.revision = revision = b.revision + 1
        entry = Entry(key=key, value=value, revision=revision, operation="put", timestamp=_now())
        entries = b.keys.get(key)
        if entries is None:
            entries = b.keys[key] = deque(maxlen=b.history)
        entries.append(entry)
        if b.absent:
            b.absent.pop(key, None)
        return revision

    async def kv_delete(
        self, bucket: str, key: str, *, expected_revision: int | None = None
    ) -> int:
        """See :meth:`KVStore.kv_delete`."""
        b = self._bucket(bucket)
        latest = b.latest(key)
        if expected_revision is not None and (
            latest is None or latest.revision != expected_revision
        ):
            raise RevisionConflict(key, expected_revision, b.live(key))
        b.clear_ttl(key)
        return b.append(key, b"", "delete").revision

    async def kv_keys(self, bucket: str, prefix: str = "") -> list[str]:
        """See :meth:`KVStore.kv_keys`."""
        return [e.key for e in await self.kv_entries(bucket, prefix)]

    async def kv_entries(self, bucket: str, prefix: str = "") -> list[Entry]:
        """See :meth:`KVStore.kv_entries`."""
        b = self._bucket(bucket)
        if prefix and prefix[-1] != ".":
            entry = b.live(prefix)
            return [] if entry is None else [entry]
        out = []
        for key in list(b.keys):
            if _selects(prefix, key):
                entry = b.live(key)
                if entry is not None:
                    out.append(entry)
        return out

    async def kv_history(self, bucket: str, key: str) -> list[Entry]:
        """See :meth:`KVStore.kv_history`."""
        b = self._bucket(bucket)
        b.latest(key)  # record a due expiry first
        return list(b.keys.get(key, ()))

    async def kv_watch(
        self, bucket: str, prefix: str = "", *, snapshot: bool = True, max_pending: int = 1024
    ) -> KVStore.Watcher:
        """See :meth:`KVStore.kv_watch`."""
        if max_pending < 1:
            raise ConfigurationError(f"max_pending must be at least 1, got {max_pending}")
        b = self._bucket(bucket)
        w = _MemoryWatcher(b, prefix, max_pending)
        if snapshot:
            latest = [b.latest(k) for k in list(b.keys) if _selects(prefix, k)]
            items = sorted((e for e in latest if e is not None), key=lambda e: e.revision)
            w._snapshot.extend(items)
        w._snapshot.append(None)
        b.watchers.add(w)
        return w

    def _kv_close(self) -> None:
        """Cancel TTL timers and end every watch (called when the transport closes)."""
        for b in self._buckets.values():
            for _, handle in b.expiry.values():
                handle.cancel()
            b.expiry.clear()
            for w in list(b.watchers):
                w._stop()
