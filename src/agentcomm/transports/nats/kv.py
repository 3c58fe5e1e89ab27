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
import json
import logging
import re
import time
from typing import TYPE_CHECKING, Any

import nats.errors
import nats.js.errors

from agentcomm.core.envelope import new_id
from agentcomm.core.errors import ConfigurationError, KeyExists, RevisionConflict, TransportError
from agentcomm.transports.base import KVStore
from agentcomm.transports.nats.admin import (
    Refused,
    Replicas,
    Violations,
    kv_config,
    missing,
    put_stream,
    request_checked,
)
from agentcomm.transports.nats.errors import js_error
from agentcomm.transports.nats.kv_read import (
    SCAN_LIMIT,
    NatsWatcher,
    _entry,
    _expired,
    _filter,
    _timestamp,
    consumer_scan,
)
from agentcomm.transports.nats.publishing import RETRYABLE, election_window, publish_retrying

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.js.client import JetStreamContext

__all__ = ["NatsKV"]

logger = logging.getLogger("agentcomm.nats")

Entry = KVStore.Entry

_BUCKET = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
#: A compare-and-set that lost (10164 is what a clustered stream answers).
_WRONG_LAST_SEQUENCE = frozenset({10071, 10164})
_SCAN_LIMIT = SCAN_LIMIT
_MULTI_LAST_MAX = 1024  # subjects one batched direct get may match (server limit)
_ERRORS = (nats.errors.Error, OSError)


class _TooManyResults(Exception):
    """A batched direct get matched more subjects than the server serves at once."""


class _NotReady(Exception):
    """No direct-get responder yet (a bucket created a moment ago)."""


class NatsKV:
    """JetStream key/value buckets for the blackboard (mixed into NatsTransport)."""

    #: NATS per-message TTLs have a granularity of one second.
    min_ttl: float = 1.0
    #: Whether the broker lets this user make batched direct gets (None: not asked yet).
    _batched: bool | None = None
    _violations: Violations

    namespace: str
    api_timeout: float
    replicas: Replicas

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
        stream, _ = self._kv_names(bucket)
        js = self._js()
        try:
            await js.stream_info(stream)
            return  # exists: keep its data and its history setting
        except nats.js.errors.NotFoundError:
            pass
        except _ERRORS as exc:
            raise js_error(exc, f"kv_open({bucket!r})") from exc
        cfg = kv_config(self.namespace, bucket, history, self.replicas.get(bucket))
        try:
            await put_stream(self, cfg, update=False)
        except Refused:
            raise missing(f"bucket {bucket!r} (stream {stream!r})", self.namespace) from None
        except nats.js.errors.BadRequestError as exc:
            if "already in use" not in (exc.description or ""):
                raise js_error(exc, f"kv_open({bucket!r})") from exc
        except _ERRORS as exc:
            raise js_error(exc, f"kv_open({bucket!r})") from exc

    async def _latest(self, bucket: str, key: str) -> tuple[Entry, bool] | None:
        """The key's latest stored entry (marker or not) and whether its TTL passed."""
        stream, prefix = self._kv_names(bucket)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + election_window(self.api_timeout)
        while True:
            try:
                raw = await self._js().get_msg(stream, subject=prefix + key, direct=True)
                break
            except nats.js.errors.NotFoundError:
                return None
            except (nats.errors.NoRespondersError, *RETRYABLE) as exc:
                # No bucket, or (in a cluster) its replicas are moving: ask which.
                if isinstance(exc, nats.errors.NoRespondersError) and await self._absent(stream):
                    raise self._no_bucket(bucket) from None
                if loop.time() >= deadline:
                    raise js_error(exc, f"kv_get({bucket!r}, {key!r})") from exc
                await asyncio.sleep(0.1)
            except _ERRORS as exc:
                raise js_error(exc, f"kv_get({bucket!r}, {key!r})") from exc
        headers = dict(raw.headers) if raw.headers else None
        ts = raw.time.timestamp() if raw.time is not None else time.time()
        entry = _entry(key, raw.data, raw.seq or 0, headers, ts)
        return entry, _expired(headers, ts, time.time())

    async def _absent(self, stream: str) -> bool:
        """True when JetStream says ``stream`` does not exist (False if it cannot say)."""
        try:
            await self._js().stream_info(stream)
        except nats.js.errors.NotFoundError:
            return True
        except _ERRORS:
            return False
        return False

    async def kv_get(self, bucket: str, key: str) -> Entry | None:
        got = await self._latest(bucket, key)
        if got is None:
            return None
        entry, expired = got
        return entry if entry.operation == "put" and not expired else None

    async def _publish(self, bucket: str, key: str, value: bytes, headers: dict[str, str]) -> int:
        stream, prefix = self._kv_names(bucket)
        try:
            ack, _ = await publish_retrying(
                self._js(),
                prefix + key,
                value,
                stream=stream,
                headers=headers,
                timeout=self.api_timeout,
                retry_for=election_window(self.api_timeout),
            )
        except nats.js.errors.NoStreamResponseError as exc:
            # the bucket is missing, or JetStream is not answering yet after a restart
            if await self._absent(stream):
                raise self._no_bucket(bucket) from None
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
            # One id per attempt at this write: retried as is across a leader change.
            headers["Nats-Msg-Id"] = new_id()
            if expected is not None:
                headers["Nats-Expected-Last-Subject-Sequence"] = str(expected)
            try:
                return await self._publish(bucket, key, value, headers)
            except nats.js.errors.APIError as exc:
                if exc.err_code not in _WRONG_LAST_SEQUENCE:
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
        headers = {"KV-Operation": "DEL", "Nats-Msg-Id": new_id()}
        if expected_revision is not None:
            headers["Nats-Expected-Last-Subject-Sequence"] = str(expected_revision)
        try:
            return await self._publish(bucket, key, b"", headers)
        except nats.js.errors.APIError as exc:
            if exc.err_code not in _WRONG_LAST_SEQUENCE:
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
        consistent at (JetStream's ``Nats-UpTo-Sequence``). Right after a bucket is
        created its direct-get responders may not listen yet (status 503): retried.
        """
        for _ in range(20):
            try:
                return await self._direct_batch_once(bucket, request, retry=True)
            except _NotReady:
                await asyncio.sleep(0.05)
        return await self._direct_batch_once(bucket, request, retry=False)

    async def _direct_batch_once(
        self, bucket: str, request: dict[str, Any], *, retry: bool
    ) -> tuple[list[tuple[Entry, dict[str, str] | None]], int]:
        stream, prefix = self._kv_names(bucket)
        if self._batched is False:
            raise Refused(f"$JS.API.DIRECT.GET.{stream}")
        nc = self.client
        inbox = nc.new_inbox()
        sub = await nc.subscribe(inbox, pending_msgs_limit=_SCAN_LIMIT + 16)
        out: list[tuple[Entry, dict[str, str] | None]] = []
        try:
            body = {"batch": _SCAN_LIMIT, **request}
            subject = f"$JS.API.DIRECT.GET.{stream}"
            if self._batched is None:  # the first one: does the broker let this user?
                await self._probe_batched(stream, subject)
            await nc.publish(subject, json.dumps(body).encode(), reply=inbox)
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
                    if status == "503" and retry:
                        raise _NotReady
                    if status == "408" and not out:
                        # A server before 2.11 reads no batch fields: to it the request
                        # names no message ("Empty Request"). Read through consumers.
                        self._batched = False
                        logger.info(
                            "this NATS server has no batched direct get (before 2.11): "
                            "reading prefixes and history of %s through consumers",
                            stream,
                        )
                        raise Refused(f"$JS.API.DIRECT.GET.{stream}")
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

    async def _probe_batched(self, stream: str, subject: str) -> None:
        try:
            await request_checked(self, subject, b'{"batch":1,"seq":1}')
        except Refused:
            self._batched = False
            logger.info(
                "batched reads of %s refused by the broker (a restricted user): reading "
                "prefixes and history through consumers",
                stream,
            )
            raise
        except _ERRORS:
            return  # not a refusal: the real request says what it is
        self._batched = True

    async def kv_entries(self, bucket: str, prefix: str = "") -> list[Entry]:
        if prefix and not prefix.endswith("."):
            entry = await self.kv_get(bucket, prefix)
            return [] if entry is None else [entry]
        try:
            subject = self._kv_names(bucket)[1] + _filter(prefix)
            try:
                got, _ = await self._multi_last(bucket, subject)
            except Refused:
                got = await consumer_scan(self, bucket, subject, last_per_key=True)
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
            try:
                got, _ = await self._direct_batch(bucket, {"seq": 1, "next_by_subj": subject})
            except Refused:
                got = await consumer_scan(self, bucket, subject, last_per_key=False)
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
        w = NatsWatcher(self, bucket, prefix, snapshot=snapshot, max_pending=max_pending)
        await w.start()
        return w
