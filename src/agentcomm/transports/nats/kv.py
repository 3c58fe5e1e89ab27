"""The key/value half of the NATS transport (see :class:`~.base.KVStore`), on JetStream KV.

A bucket ``B`` of namespace ``ns`` is the JetStream KV bucket ``ns_B``: the stream
``KV_ns_B`` with subjects ``$KV.ns_B.<key>``, so the ``nats kv`` tools can inspect it.

* revisions are stream sequences; compare-and-set is the
  ``Nats-Expected-Last-Subject-Sequence`` header; create-only expects sequence 0 and
  retries on the revision of a delete/expiry marker, as ``KeyValue.create`` does;
* delete writes a ``KV-Operation: DEL`` marker;
* a TTL is the per-message ``Nats-TTL`` header; the server then writes a
  ``Nats-Marker-Reason: MaxAge`` marker (read as ``"expire"``).

Two differences from memory, both from JetStream and listed in ``docs/nats.md``:
a put with a TTL rolls the key up (``Nats-Rollup: sub``, dropping its older
revisions, otherwise the previous value would reappear when the TTL one is removed),
and an expiry marker stays in the history for one second (the server's marker TTL
cannot exceed the shortest message TTL without raising it).
"""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import re
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Literal

import nats.errors
import nats.js.errors
from nats.js import api

from agentcomm.core.errors import ConfigurationError, KeyExists, RevisionConflict, TransportError
from agentcomm.transports.base import KVStore
from agentcomm.transports.nats.errors import js_error

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.js.client import JetStreamContext

__all__ = ["NatsKV"]

logger = logging.getLogger("agentcomm.nats")

Entry = KVStore.Entry

_BUCKET = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_WRONG_LAST_SEQUENCE = 10071
_MARKER_TTL = 1.0  # seconds; see the module docstring
_SCAN_LIMIT = 100_000  # entries one keys/entries/history call may return
_MULTI_LAST_MAX = 1024  # subjects one batched direct get may match (server limit)
_ERRORS = (nats.errors.Error, OSError)


class _TooManyResults(Exception):
    """A batched direct get matched more subjects than the server serves at once."""


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


class _NatsWatcher(KVStore.Watcher):
    """An ordered pull consumer read on demand: never more than ``max_pending`` buffered.

    It never lags: a slow reader just leaves changes on the server (JetStream keeps
    them) and pulls them later. A gap in consumer sequences (a delivery lost in a
    reconnect) or a lost consumer (a broker restart) recreates the consumer from the
    last stream sequence seen, so nothing is lost or repeated.
    """

    def __init__(
        self,
        kv: NatsKV,
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
                entries, upto = await self._kv._multi_last(self._bucket, self._filter)
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


class NatsKV:
    """JetStream key/value buckets for the blackboard (mixed into NatsTransport)."""

    #: NATS per-message TTLs have a granularity of one second.
    min_ttl: float = 1.0

    namespace: str
    api_timeout: float

    if TYPE_CHECKING:  # provided by NatsTransport and NatsEventLog

        @property
        def client(self) -> Client: ...

        def _js(self) -> JetStreamContext: ...

    # -- names -------------------------------------------------------------------
    def _kv_names(self, bucket: str) -> tuple[str, str]:
        if not _BUCKET.match(bucket):
            raise ConfigurationError(f"bucket name {bucket!r} must be 1-64 of [A-Za-z0-9_-]")
        full = f"{self.namespace}_{bucket}"
        return f"KV_{full}", f"$KV.{full}."

    def _no_bucket(self, bucket: str) -> ConfigurationError:
        return ConfigurationError(f"bucket {bucket!r} is not open; call kv_open({bucket!r}) first")

    # -- buckets -------------------------------------------------------------------
    async def kv_open(self, bucket: str, *, history: int) -> None:
        if not 1 <= history <= 64:
            raise ConfigurationError(f"history must be between 1 and 64, got {history}")
        stream, prefix = self._kv_names(bucket)
        js = self._js()
        try:
            await js.stream_info(stream)
            return  # exists: keep its data and its history setting
        except nats.js.errors.NotFoundError:
            pass
        except _ERRORS as exc:
            raise js_error(exc, f"kv_open({bucket!r})") from exc
        cfg = api.StreamConfig(
            name=stream,
            subjects=[prefix + ">"],
            retention=api.RetentionPolicy.LIMITS,
            discard=api.DiscardPolicy.NEW,
            max_msgs_per_subject=history,
            max_msgs=-1,
            max_bytes=-1,
            max_age=0,
            duplicate_window=120.0,
            storage=api.StorageType.FILE,
            allow_rollup_hdrs=True,
            deny_delete=True,
            allow_direct=True,
            allow_msg_ttl=True,
            subject_delete_marker_ttl=_MARKER_TTL,
        )
        try:
            await js.add_stream(cfg)
        except nats.js.errors.BadRequestError as exc:
            if "already in use" not in (exc.description or ""):
                raise js_error(exc, f"kv_open({bucket!r})") from exc
        except _ERRORS as exc:
            raise js_error(exc, f"kv_open({bucket!r})") from exc

    async def _latest(self, bucket: str, key: str) -> tuple[Entry, bool] | None:
        """The key's latest stored entry (marker or not) and whether its TTL passed."""
        stream, prefix = self._kv_names(bucket)
        try:
            raw = await self._js().get_msg(stream, subject=prefix + key, direct=True)
        except nats.js.errors.NotFoundError:
            return None
        except nats.errors.NoRespondersError:
            raise self._no_bucket(bucket) from None
        except _ERRORS as exc:
            raise js_error(exc, f"kv_get({bucket!r}, {key!r})") from exc
        headers = dict(raw.headers) if raw.headers else None
        ts = raw.time.timestamp() if raw.time is not None else time.time()
        entry = _entry(key, raw.data, raw.seq or 0, headers, ts)
        return entry, _expired(headers, ts, time.time())

    async def kv_get(self, bucket: str, key: str) -> Entry | None:
        got = await self._latest(bucket, key)
        if got is None:
            return None
        entry, expired = got
        return entry if entry.operation == "put" and not expired else None

    async def _publish(self, bucket: str, key: str, value: bytes, headers: dict[str, str]) -> int:
        stream, prefix = self._kv_names(bucket)
        try:
            ack = await self._js().publish(
                prefix + key, value, stream=stream, headers=dict(headers) or None
            )
        except nats.js.errors.NoStreamResponseError as exc:
            # the bucket is missing, or JetStream is not answering yet after a restart
            try:
                await self._js().stream_info(stream)
            except nats.js.errors.NotFoundError:
                raise self._no_bucket(bucket) from None
            except _ERRORS:
                pass
            raise js_error(exc, f"kv_put({bucket!r}, {key!r})") from exc
        return ack.seq

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
        headers: dict[str, str] = {}
        if ttl is not None:
            if ttl < self.min_ttl:
                raise ConfigurationError(f"ttl must be at least {self.min_ttl:g}s on NATS")
            headers["Nats-TTL"] = f"{max(1, round(ttl * 1000))}ms"
            headers["Nats-Rollup"] = "sub"
        expected = expected_revision
        if create_only and expected is None:
            expected = 0
        for _ in range(8):  # create-only retries on a marker that a racer replaced
            if expected is not None:
                headers["Nats-Expected-Last-Subject-Sequence"] = str(expected)
            try:
                return await self._publish(bucket, key, value, headers)
            except nats.js.errors.APIError as exc:
                if exc.err_code != _WRONG_LAST_SEQUENCE:
                    raise js_error(exc, f"kv_put({bucket!r}, {key!r})") from exc
            except _ERRORS as exc:
                raise js_error(exc, f"kv_put({bucket!r}, {key!r})") from exc
            latest = await self._latest(bucket, key)
            live = latest[0] if latest and latest[0].operation == "put" and not latest[1] else None
            if create_only and expected_revision is None:
                if live is not None:
                    raise KeyExists(key, None, live)
                expected = latest[0].revision if latest else 0
                continue
            raise RevisionConflict(key, expected_revision, live)
        raise TransportError(f"kv_put({bucket!r}, {key!r}): create kept racing; retry")

    async def kv_delete(
        self, bucket: str, key: str, *, expected_revision: int | None = None
    ) -> int:
        headers = {"KV-Operation": "DEL"}
        if expected_revision is not None:
            headers["Nats-Expected-Last-Subject-Sequence"] = str(expected_revision)
        try:
            return await self._publish(bucket, key, b"", headers)
        except nats.js.errors.APIError as exc:
            if exc.err_code != _WRONG_LAST_SEQUENCE:
                raise js_error(exc, f"kv_delete({bucket!r}, {key!r})") from exc
        except _ERRORS as exc:
            raise js_error(exc, f"kv_delete({bucket!r}, {key!r})") from exc
        raise RevisionConflict(key, expected_revision, await self.kv_get(bucket, key))

    # -- scans and watches -----------------------------------------------------------
    async def _multi_last(
        self, bucket: str, subject_filter: str
    ) -> tuple[list[tuple[Entry, dict[str, str] | None]], int]:
        """The latest entry of every key matching the filter, consistent at one sequence."""
        try:
            return await self._direct_batch(bucket, {"multi_last": [subject_filter]})
        except _TooManyResults:
            pass
        # Over the server's 1024-subject limit: list the subjects, then read them in
        # chunks, every chunk up to the same sequence, so the result stays consistent.
        stream, _ = self._kv_names(bucket)
        info = await self._js().stream_info(stream, subjects_filter=subject_filter)
        upto = info.state.last_seq
        subjects = sorted(info.state.subjects or {})
        if len(subjects) > _SCAN_LIMIT:
            raise TransportError(
                f"more than {_SCAN_LIMIT} keys in bucket {bucket!r}; read a narrower prefix"
            )
        out: list[tuple[Entry, dict[str, str] | None]] = []
        for i in range(0, len(subjects), _MULTI_LAST_MAX):
            chunk = subjects[i : i + _MULTI_LAST_MAX]
            got, _ = await self._direct_batch(bucket, {"multi_last": chunk, "up_to_seq": upto})
            out.extend(got)
        return out, upto

    async def _last_seq(self, bucket: str) -> int:
        stream, _ = self._kv_names(bucket)
        try:
            return (await self._js().stream_info(stream)).state.last_seq
        except nats.js.errors.NotFoundError:
            raise self._no_bucket(bucket) from None

    async def _direct_batch(
        self, bucket: str, request: dict[str, Any]
    ) -> tuple[list[tuple[Entry, dict[str, str] | None]], int]:
        """A batched direct get (``multi_last`` or ``next_by_subj``): one round trip.

        Returns the entries with their headers and the stream sequence the read is
        consistent at (JetStream's ``Nats-UpTo-Sequence``).
        """
        stream, prefix = self._kv_names(bucket)
        nc = self.client
        inbox = nc.new_inbox()
        sub = await nc.subscribe(inbox, pending_msgs_limit=_SCAN_LIMIT + 16)
        out: list[tuple[Entry, dict[str, str] | None]] = []
        try:
            body = {"batch": _SCAN_LIMIT, **request}
            await nc.publish(f"$JS.API.DIRECT.GET.{stream}", json.dumps(body).encode(), reply=inbox)
            async with asyncio.timeout(max(self.api_timeout, 1.0)):
                while True:
                    msg = await sub.next_msg(timeout=None)
                    headers = dict(msg.headers) if msg.headers else {}
                    status = headers.get("Status")
                    if status == "204":  # end of batch
                        if int(headers.get("Nats-Num-Pending", "0") or 0) > 0:
                            raise TransportError(
                                f"more than {_SCAN_LIMIT} entries in bucket {bucket!r}; "
                                "read a narrower prefix"
                            )
                        upto = headers.get("Nats-UpTo-Sequence") or headers.get(
                            "Nats-Last-Sequence", "0"
                        )
                        return out, int(upto)
                    if status == "404":  # nothing matches
                        return out, await self._last_seq(bucket)
                    if status == "413":
                        raise _TooManyResults
                    if status is not None:
                        raise TransportError(
                            f"reading bucket {bucket!r}: JetStream answered {status} "
                            f"{headers.get('Description', '')}"
                        )
                    ts = _timestamp(headers.get("Nats-Time-Stamp"))
                    subject = headers.get("Nats-Subject", "")
                    seq = int(headers.get("Nats-Sequence", "0"))
                    out.append(
                        (_entry(subject[len(prefix) :], msg.data, seq, headers, ts), headers)
                    )
        except TimeoutError:
            raise TransportError(
                f"reading bucket {bucket!r} timed out; is the NATS server up?"
            ) from None
        finally:
            try:
                await sub.unsubscribe()
            except _ERRORS as exc:
                logger.debug("unsubscribe failed: %s", exc)

    async def kv_entries(self, bucket: str, prefix: str = "") -> list[Entry]:
        if prefix and not prefix.endswith("."):
            entry = await self.kv_get(bucket, prefix)
            return [] if entry is None else [entry]
        try:
            subject = self._kv_names(bucket)[1] + _filter(prefix)
            got, _ = await self._multi_last(bucket, subject)
        except nats.errors.NoRespondersError:
            raise self._no_bucket(bucket) from None
        except _ERRORS as exc:
            raise js_error(exc, f"reading bucket {bucket!r}") from exc
        now = time.time()
        # Skip values whose TTL passed but that the server has not removed yet.
        return [e for e, h in got if e.operation == "put" and not _expired(h, e.timestamp, now)]

    async def kv_keys(self, bucket: str, prefix: str = "") -> list[str]:
        return [e.key for e in await self.kv_entries(bucket, prefix)]

    async def kv_history(self, bucket: str, key: str) -> list[Entry]:
        try:
            subject = self._kv_names(bucket)[1] + key
            got, _ = await self._direct_batch(bucket, {"seq": 1, "next_by_subj": subject})
        except nats.errors.NoRespondersError:
            raise self._no_bucket(bucket) from None
        except _ERRORS as exc:
            raise js_error(exc, f"kv_history({bucket!r}, {key!r})") from exc
        return [e for e, _ in got]

    async def kv_watch(
        self, bucket: str, prefix: str = "", *, snapshot: bool = True, max_pending: int = 1024
    ) -> KVStore.Watcher:
        if max_pending < 1:
            raise ConfigurationError(f"max_pending must be at least 1, got {max_pending}")
        w = _NatsWatcher(self, bucket, prefix, snapshot=snapshot, max_pending=max_pending)
        await w.start()
        return w
