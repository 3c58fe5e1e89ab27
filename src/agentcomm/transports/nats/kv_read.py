"""Reading a NATS KV bucket through consumers: watches, and scans for restricted users.

Split from :mod:`._nats_kv` (the bucket operations). A watch is an ordered pull
consumer read on demand. A *scan* (prefix read, history) is normally one batched
direct get, whose request body the broker's permissions cannot see; for a user of
the generated NATS config, whose batched direct gets the broker refuses, the same
read goes through an ephemeral consumer created with its filter in the subject
(``$JS.API.CONSUMER.CREATE.<stream>.<name>.<filter>``), which the broker checks
against the user's read rules (see ``docs/security.md``).
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import secrets
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Literal, Protocol

import nats.errors
import nats.js.errors
from nats.js import api

from agentcomm.core.errors import ConfigurationError, TransportError
from agentcomm.transports.base import KVStore
from agentcomm.transports.nats.admin import Refused
from agentcomm.transports.nats.errors import js_error

if TYPE_CHECKING:
    from nats.js.client import JetStreamContext


__all__ = ["NatsWatcher", "consumer_scan"]


class _Reader(Protocol):
    """What the readers need of the KV engine (``transports.nats.kv.NatsKV``)."""

    api_timeout: float

    def _js(self) -> JetStreamContext: ...

    def _kv_names(self, bucket: str) -> tuple[str, str]: ...

    def _no_bucket(self, bucket: str) -> ConfigurationError: ...

    async def _multi_last(
        self, bucket: str, subject_filter: str
    ) -> tuple[list[tuple[KVStore.Entry, dict[str, str] | None]], int]: ...

    async def _last_seq(self, bucket: str) -> int: ...


logger = logging.getLogger("agentcomm.nats")

Entry = KVStore.Entry

SCAN_LIMIT = 100_000  # entries one keys/entries/history call may return
_ERRORS = (nats.errors.Error, OSError)


def _ttl_seconds(value: str | None) -> float | None:
    """Parse a ``Nats-TTL`` header: integer seconds or a Go duration (``1500ms``, ``2s``)."""
    if not value:
        return None
    try:
        if value.endswith("ms"):
            return float(value[:-2]) / 1000
        if value.endswith("s"):
            return float(value[:-1])
        return float(value)
    except ValueError:
        return None


def _operation(headers: dict[str, str] | None) -> Literal["put", "delete", "expire"]:
    if not headers:
        return "put"
    op = headers.get("KV-Operation")
    if op == "DEL":
        return "delete"
    if op == "PURGE":
        return "expire"
    reason = headers.get("Nats-Marker-Reason")
    if reason is not None:
        return "delete" if reason == "Remove" else "expire"
    return "put"


def _entry(
    key: str, data: bytes | None, seq: int, headers: dict[str, str] | None, ts: float
) -> Entry:
    op = _operation(headers)
    return Entry(
        key=key,
        value=(data or b"") if op == "put" else b"",
        revision=seq,
        operation=op,
        timestamp=ts,
    )


def _expired(headers: dict[str, str] | None, ts: float, now: float) -> bool:
    ttl = _ttl_seconds(headers.get("Nats-TTL") if headers else None)
    return ttl is not None and ts + ttl <= now


def _timestamp(value: str | None) -> float:
    """A ``Nats-Time-Stamp`` (RFC 3339 with nanoseconds) as Unix seconds."""
    if not value:
        return time.time()
    main, _, frac = value.rstrip("Z").partition(".")
    base = datetime.datetime.fromisoformat(main).replace(tzinfo=datetime.UTC).timestamp()
    return base + (float("0." + frac) if frac else 0.0)


def _filter(prefix: str) -> str:
    if not prefix:
        return ">"
    return prefix + ">" if prefix.endswith(".") else prefix


def _retrieve(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()  # consumed, so asyncio does not warn about it


class NatsWatcher(KVStore.Watcher):
    """An ordered pull consumer read on demand: never more than ``max_pending`` buffered.

    It never lags: a slow reader just leaves changes on the server (JetStream keeps
    them) and pulls them later. A gap in consumer sequences (a delivery lost in a
    reconnect) or a lost consumer (a broker restart) recreates the consumer from the
    last stream sequence seen, so nothing is lost or repeated.
    """

    def __init__(
        self,
        kv: _Reader,
        bucket: str,
        prefix: str,
        *,
        snapshot: bool,
        max_pending: int,
    ) -> None:
        self._kv = kv
        self._bucket = bucket
        self._stream, self._subject_prefix = kv._kv_names(bucket)
        self._filter = self._subject_prefix + _filter(prefix)
        self._snapshot = snapshot
        self._max_pending = max_pending
        self._buf: deque[Entry | None] = deque()
        self._psub: JetStreamContext.PullSubscription | None = None
        self._consumer: str | None = None
        self._last_stream = 0
        self._last_consumer = 0
        self._snapshot_done = False
        self._closed = False
        self._wake = asyncio.Event()
        self.lagged = False
        self._failing = False  # a failure was logged as a warning; recovery is too

    # -- consumer lifecycle ------------------------------------------------------------
    async def _create(self, deliver: api.DeliverPolicy, start_seq: int | None = None) -> int:
        js = self._kv._js()
        cfg = api.ConsumerConfig(
            name=consumer_name(),  # the create subject then carries the filter
            deliver_policy=deliver,
            opt_start_seq=start_seq,
            ack_policy=api.AckPolicy.NONE,
            filter_subject=self._filter,
            inactive_threshold=60.0,
            mem_storage=True,
            num_replicas=1,
        )
        try:
            ci = await js.add_consumer(self._stream, cfg)
        except nats.js.errors.NotFoundError:
            raise self._kv._no_bucket(self._bucket) from None
        self._consumer = ci.name
        self._psub = await js.pull_subscribe_bind(consumer=ci.name, stream=self._stream)
        self._last_consumer = 0
        return ci.num_pending or 0

    async def start(self) -> None:
        try:
            if self._snapshot:
                # One atomic batch read of the latest entry per key (markers included),
                # then a consumer that continues exactly after it: nothing lost or repeated.
                try:
                    entries, upto = await self._kv._multi_last(self._bucket, self._filter)
                except Refused:
                    # A restricted user: the consumer delivers the latest entry per key
                    # first; the snapshot ends with the delivery that leaves none pending.
                    if not await self._create(api.DeliverPolicy.LAST_PER_SUBJECT):
                        self._end_snapshot()
                    return
                snapshot = sorted((e for e, _ in entries), key=lambda e: e.revision)
                self._buf.extend(snapshot)
                self._last_stream = upto
                await self._create(api.DeliverPolicy.BY_START_SEQUENCE, upto + 1)
            else:
                self._last_stream = await self._kv._last_seq(self._bucket)
                await self._create(api.DeliverPolicy.BY_START_SEQUENCE, self._last_stream + 1)
            self._end_snapshot()
        except _ERRORS as exc:
            await self._drop_consumer()
            raise js_error(exc, f"kv_watch({self._bucket!r})") from exc

    async def _drop_consumer(self) -> None:
        psub, self._psub = self._psub, None
        name, self._consumer = self._consumer, None
        if psub is not None:
            try:
                await psub.unsubscribe()
            except _ERRORS as exc:
                logger.debug("unsubscribing a watch failed: %s", exc)
        if name is not None:
            try:
                await self._kv._js().delete_consumer(self._stream, name)
            except _ERRORS as exc:
                logger.debug("deleting watch consumer %s failed: %s", name, exc)

    async def _reset(self) -> None:
        """Recreate the consumer after the last change seen (retrying while the broker is away)."""
        await self._drop_consumer()
        delay = 0.1
        while not self._closed:
            try:
                await self._create(api.DeliverPolicy.BY_START_SEQUENCE, self._last_stream + 1)
                if self._failing:
                    self._failing = False
                    logger.warning("watch on %s: recovered; changes flow again", self._bucket)
                return
            except ConfigurationError:
                raise
            except (TransportError, *_ERRORS) as exc:
                self._failed("recreating its consumer failed", exc)
            try:
                async with asyncio.timeout(delay):
                    await self._wake.wait()
            except TimeoutError:
                pass
            delay = min(delay * 2, 2.0)

    def _failed(self, what: str, exc: BaseException) -> None:
        """Log a failure: a warning the first time, debug while it goes on."""
        if self._failing:
            logger.debug("watch on %s: %s (%r); retrying", self._bucket, what, exc)
            return
        self._failing = True
        logger.warning(
            "watch on %s: %s (%r); retrying until the broker answers (changes are kept)",
            self._bucket,
            what,
            exc,
        )

    # -- reading ---------------------------------------------------------------------
    def _end_snapshot(self) -> None:
        if not self._snapshot_done:
            self._snapshot_done = True
            self._buf.append(None)

    async def _pull(self) -> None:
        psub = self._psub
        if psub is None:
            await self._reset()
            return
        fetch = asyncio.ensure_future(psub.fetch(self._max_pending, timeout=5.0))
        fetch.add_done_callback(_retrieve)
        woken = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait((fetch, woken), return_when=asyncio.FIRST_COMPLETED)
        finally:
            woken.cancel()
            if not fetch.done():
                fetch.cancel()  # closed: the fetch unwinds by itself
        if not fetch.done() or fetch.cancelled():
            return
        exc = fetch.exception()
        if isinstance(exc, TimeoutError):  # nats-py raises its own and plain asyncio ones
            return
        if exc is not None:
            self._failed("fetch failed", exc)
            await self._reset()
            return
        for msg in fetch.result():
            meta = msg.metadata
            if meta.sequence.consumer != self._last_consumer + 1:
                await self._reset()  # a delivery was lost: restart after the last one seen
                return
            self._last_consumer = meta.sequence.consumer
            self._last_stream = meta.sequence.stream
            ts = meta.timestamp.timestamp()
            entry = _entry(
                msg.subject[len(self._subject_prefix) :],
                msg.data,
                self._last_stream,
                msg.headers,
                ts,
            )
            self._buf.append(entry)
            if not self._snapshot_done and meta.num_pending == 0:
                self._end_snapshot()  # the consumer-made snapshot (restricted users)

    async def __anext__(self) -> Entry | None:
        while True:
            if self._buf:
                return self._buf.popleft()
            if self._closed:
                raise StopAsyncIteration
            await self._pull()

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._wake.set()
        self._buf.clear()
        await self._drop_consumer()


def consumer_name() -> str:
    """A random name for an ephemeral consumer (128 bits: nobody else can guess it)."""
    return "ac" + secrets.token_hex(16)


async def consumer_scan(
    kv: _Reader, bucket: str, subject_filter: str, *, last_per_key: bool
) -> list[tuple[Entry, dict[str, str] | None]]:
    """Entries matching ``subject_filter`` read through an ephemeral consumer.

    The latest entry per key (``last_per_key``, a prefix read) or every retained one
    (a key's history), markers included, in stream order; for users whose batched
    direct gets the broker refuses. The consumer is deleted afterwards (and by the
    server after a minute of disuse if this process dies first).

    Example::

        got = await consumer_scan(kv, "blackboard", "$KV.ns_blackboard.plan.>", last_per_key=True)
    """
    js = kv._js()
    stream, prefix = kv._kv_names(bucket)
    deliver = api.DeliverPolicy.LAST_PER_SUBJECT if last_per_key else api.DeliverPolicy.ALL
    cfg = api.ConsumerConfig(
        name=consumer_name(),
        deliver_policy=deliver,
        ack_policy=api.AckPolicy.NONE,
        filter_subject=subject_filter,
        inactive_threshold=60.0,
        mem_storage=True,
        num_replicas=1,
    )
    try:
        ci = await js.add_consumer(stream, cfg)
    except nats.js.errors.NotFoundError:
        raise kv._no_bucket(bucket) from None
    out: list[tuple[Entry, dict[str, str] | None]] = []
    try:
        if not ci.num_pending:
            return out
        psub = await js.pull_subscribe_bind(consumer=ci.name, stream=stream)
        try:
            while True:
                try:
                    msgs = await psub.fetch(1024, timeout=max(kv.api_timeout, 1.0))
                except TimeoutError:  # what was pending expired meanwhile
                    return out
                for msg in msgs:
                    meta = msg.metadata
                    headers = dict(msg.headers) if msg.headers else None
                    ts = meta.timestamp.timestamp()
                    key = msg.subject[len(prefix) :]
                    out.append((_entry(key, msg.data, meta.sequence.stream, headers, ts), headers))
                    if len(out) > SCAN_LIMIT:
                        raise TransportError(
                            f"more than {SCAN_LIMIT} entries in bucket {bucket!r}; "
                            "read a narrower prefix"
                        )
                    if meta.num_pending == 0:
                        return out
        finally:
            await _quiet(psub.unsubscribe(), "unsubscribing a scan")
    finally:
        await _quiet(js.delete_consumer(stream, ci.name), "deleting a scan consumer")


async def _quiet(call: Any, what: str) -> None:
    try:
        await call
    except _ERRORS as exc:
        logger.debug("%s failed: %s", what, exc)
