"""The stream half of the NATS transport (see :class:`~.base.EventLog`), on JetStream.

Mapping (one to one, no emulation):

* a stream ``S`` of namespace ``ns`` is the JetStream stream ``ns_S`` with subjects
  ``ns.s.S.>``, retention ``limits``, discard ``old``, file storage, direct get;
* ``append`` is a JetStream publish with ack, ``msg_id`` its ``Nats-Msg-Id`` header;
* a consumer is a durable pull consumer with explicit acks; a handle is a pull
  subscription bound to it; ack / nak(delay) / term / in_progress are JetStream's.

Malformed messages found in a stream (not envelopes) never stop a consumer: ``fetch``
hands them out as a stand-in envelope holding the raw bytes, flagged
``LogMessage.invalid`` (a subscription dead-letters them once, reason ``invalid``),
and reads by sequence skip them; both are counted in the transport's statistics.
While the broker is away, ``fetch`` returns nothing after its timeout and settling a
message logs a warning instead of raising: the message stays unsettled on the server
and is redelivered after ``ack_wait`` (at least once), so a subscription survives a
broker restart.
"""

from __future__ import annotations

import datetime
import logging
import re
from typing import TYPE_CHECKING

import msgspec
import nats.errors
import nats.js.errors
from nats.js import api

from agentcomm.core.envelope import decode_envelope, encode_envelope, new_id
from agentcomm.core.errors import ConfigurationError, DecodeError
from agentcomm.transports.nats.admin import (
    Refused,
    Replicas,
    Violations,
    differs,
    events_config,
    missing,
    put_stream,
)
from agentcomm.transports.nats.consumers import _NatsConsumer, _same
from agentcomm.transports.nats.errors import js_error
from agentcomm.transports.nats.publishing import election_window, publish_retrying
from agentcomm.transports.streams import (
    ConsumerConfig,
    ConsumerInfo,
    LogConsumer,
    StreamConfig,
    StreamInfo,
)

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.js.client import JetStreamContext
    from nats.js.manager import JetStreamManager

    from agentcomm.core.envelope import Envelope

from agentcomm.transports.nats.errors import NATS_ERRORS as _ERRORS

__all__ = ["NatsEventLog"]

logger = logging.getLogger("agentcomm.nats")

_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
_STREAM_NOT_FOUND = 10059
_CONSUMER_NOT_FOUND = 10014
_DELIVER = {
    "new": api.DeliverPolicy.NEW,
    "all": api.DeliverPolicy.ALL,
    "by_start_sequence": api.DeliverPolicy.BY_START_SEQUENCE,
    "by_start_time": api.DeliverPolicy.BY_START_TIME,
}


class NatsEventLog:
    """JetStream streams and durable pull consumers for pub/sub (mixed into NatsTransport)."""

    namespace: str
    api_timeout: float
    replicas: Replicas
    _violations: Violations

    if TYPE_CHECKING:  # provided by NatsTransport

        @property
        def client(self) -> Client: ...

        def _count_malformed(self, kind: str, where: str, error: object) -> None: ...

        def _js(self) -> JetStreamContext: ...

    # -- names -------------------------------------------------------------------
    def _js_stream(self, stream: str) -> str:
        if not _NAME.match(stream):
            raise ConfigurationError(f"stream name {stream!r} must match [A-Za-z0-9_-]+")
        return f"{self.namespace}_{stream}"

    def _subject_prefix(self, stream: str) -> str:
        return f"{self.namespace}.s.{stream}."

    def _jsm(self) -> JetStreamManager:
        return self._js()

    # -- streams -----------------------------------------------------------------
    async def ensure_stream(self, config: StreamConfig) -> StreamInfo:
        """Create the stream, or update it when its configuration differs.

        A user of the generated NATS config may do neither: a missing stream is then a
        ConfigurationError that says how to create it, and a differing one is used as
        the admin configured it (with a warning).
        """
        js_name = self._js_stream(config.name)
        copies = self.replicas.get(config.name)
        want = events_config(self.namespace, config, copies)
        jsm = self._jsm()
        what = f"ensure_stream({config.name!r})"
        try:
            try:
                have = await jsm.stream_info(js_name)
            except nats.js.errors.NotFoundError:
                try:
                    si = await put_stream(self, want, update=False)
                except Refused:
                    raise missing(f"stream {js_name!r}", self.namespace) from None
                return self._stream_info(config.name, si.state)
            changed = differs(have.config, want)
            if copies is not None and have.config.num_replicas != copies:
                changed.append("num_replicas")  # asked for: scaled up or down
            if not changed:
                return self._stream_info(config.name, have.state)
            # keep what this runtime does not manage (replicas, placement, ...)
            update = have.config.evolve(**{f: getattr(want, f) for f in changed})
            try:
                si = await put_stream(self, update, update=True)
            except Refused:
                logger.warning(
                    "stream %s differs from this runtime's configuration in %s, and this "
                    "NATS user may not update it: using it as it is (the admin changes it "
                    "with NatsTransport.setup(retention=...))",
                    js_name,
                    ", ".join(changed),
                )
                return self._stream_info(config.name, have.state)
        except _ERRORS as exc:
            raise js_error(exc, what) from exc
        return self._stream_info(config.name, si.state)

    @staticmethod
    def _stream_info(name: str, state: api.StreamState) -> StreamInfo:
        return StreamInfo(
            name=name,
            messages=state.messages,
            bytes=state.bytes,
            first_seq=max(state.first_seq, 1),
            last_seq=state.last_seq,
        )

    async def append(
        self,
        stream: str,
        envelope: Envelope,
        *,
        msg_id: str | None = None,
        subject: str | None = None,
    ) -> int:
        return (await self.append_checked(stream, envelope, msg_id=msg_id, subject=subject))[0]

    async def append_checked(
        self,
        stream: str,
        envelope: Envelope,
        *,
        msg_id: str | None = None,
        subject: str | None = None,
    ) -> tuple[int, bool]:
        js_name = self._js_stream(stream)
        topic = subject or envelope.topic
        if not topic:
            raise ConfigurationError("an appended envelope needs a topic (its subject)")
        subject, data = self._subject_prefix(stream) + topic, encode_envelope(envelope)
        try:
            if msg_id is None and not self.replicas.clustered:
                # One server: no leader election to ride out, so no id of our own (it
                # would cost every publish a header and a dedupe entry at the server).
                ack = await self._js().publish(
                    subject, data, timeout=self.api_timeout, stream=js_name
                )
                retried = False
            else:
                # The caller's id, or one of our own: a publish retried across a leader
                # change is then stored once (docs/nats.md, "Clusters").
                ack, retried = await publish_retrying(
                    self._js(),
                    subject,
                    data,
                    stream=js_name,
                    headers={"Nats-Msg-Id": msg_id or new_id()},
                    timeout=self.api_timeout,  # an event's deadline is its TTL, not this call's
                    retry_for=election_window(self.api_timeout),
                )
        except nats.errors.BadSubjectError:
            raise ConfigurationError(f"topic {topic!r} is not a valid subject") from None
        except nats.js.errors.NoStreamResponseError as exc:
            # missing, or JetStream not answering yet after a restart: ask which
            await self._stream_missing(stream, js_name)
            raise js_error(exc, f"append to {stream!r}") from exc
        except _ERRORS as exc:
            raise js_error(exc, f"append to {stream!r}") from exc
        # A duplicate ack of a retry is our own first attempt, stored: not a duplicate.
        return ack.seq, bool(ack.duplicate) and bool(msg_id) and not retried

    async def _stream_missing(self, stream: str, js_name: str) -> None:
        """Raise ConfigurationError when JetStream says the stream does not exist."""
        try:
            await self._jsm().stream_info(js_name)
        except nats.js.errors.NotFoundError:
            raise ConfigurationError(f"no stream {stream!r}; call ensure_stream() first") from None
        except _ERRORS:
            return  # JetStream is not answering either: a transport error, not config

    async def stream_info(self, stream: str) -> StreamInfo:
        try:
            si = await self._jsm().stream_info(self._js_stream(stream))
        except nats.js.errors.NotFoundError:
            raise ConfigurationError(f"no stream {stream!r}; call ensure_stream() first") from None
        except _ERRORS as exc:
            raise js_error(exc, f"stream_info({stream!r})") from exc
        return self._stream_info(stream, si.state)

    async def _get(
        self, stream: str, seq: int, *, next_by: str | None = None
    ) -> tuple[int, Envelope | None] | None:
        js_name = self._js_stream(stream)
        try:
            if next_by is None:
                raw = await self._jsm().get_msg(js_name, seq=seq, direct=True)
            else:
                raw = await self._jsm().get_msg(
                    js_name,
                    seq=seq,
                    subject=self._subject_prefix(stream) + next_by,
                    direct=True,
                    next=True,
                )
        except nats.js.errors.NotFoundError:
            return None
        except nats.errors.NoRespondersError:
            raise ConfigurationError(f"no stream {stream!r}; call ensure_stream() first") from None
        except _ERRORS as exc:
            raise js_error(exc, f"read from {stream!r}") from exc
        got = raw.seq or seq
        try:
            env = decode_envelope(raw.data or b"")
        except DecodeError as exc:
            self._count_malformed("stream", f"{stream} #{got}", exc)
            return got, None  # skipped by callers
        return got, msgspec.structs.replace(env, sequence=got)

    async def get_message(self, stream: str, sequence: int) -> Envelope | None:
        if sequence < 1:
            return None
        got = await self._get(stream, sequence)
        return None if got is None else got[1]

    async def read_messages(
        self, stream: str, *, start_seq: int = 1, limit: int = 100, filter_subject: str = ">"
    ) -> list[Envelope]:
        out: list[Envelope] = []
        seq = max(start_seq, 1)
        while len(out) < limit:
            got = await self._get(stream, seq, next_by=filter_subject)
            if got is None:
                break
            seq, env = got
            if env is not None:
                out.append(env)
            seq += 1
        return out

    async def delete_message(self, stream: str, sequence: int) -> bool:
        js_name = self._js_stream(stream)
        try:
            return bool(await self._jsm().delete_msg(js_name, sequence))
        except nats.js.errors.APIError as exc:
            if exc.err_code == _STREAM_NOT_FOUND:
                raise js_error(exc, f"delete from {stream!r}") from exc
            return False  # no such message
        except _ERRORS as exc:
            raise js_error(exc, f"delete from {stream!r}") from exc

    # -- consumers -----------------------------------------------------------------
    def _consumer_info(self, stream: str, ci: api.ConsumerInfo) -> ConsumerInfo:
        prefix = self._subject_prefix(stream)
        filt = ci.config.filter_subject or ">"
        return ConsumerInfo(
            name=ci.name,
            stream=stream,
            filter_subject=filt[len(prefix) :] if filt.startswith(prefix) else filt,
            num_pending=ci.num_pending or 0,
            num_ack_pending=ci.num_ack_pending or 0,
            num_redelivered=ci.num_redelivered or 0,
            delivered_seq=ci.delivered.stream_seq if ci.delivered else 0,
            ack_floor=ci.ack_floor.stream_seq if ci.ack_floor else 0,
        )

    async def open_consumer(self, stream: str, config: ConsumerConfig) -> LogConsumer:
        js_name = self._js_stream(stream)
        if not _NAME.match(config.name):
            raise ConfigurationError(f"consumer name {config.name!r} must match [A-Za-z0-9_-]+")
        filt = self._subject_prefix(stream) + config.filter_subject
        jsm = self._jsm()
        try:
            existing: api.ConsumerInfo | None = await jsm.consumer_info(js_name, config.name)
        except nats.js.errors.NotFoundError as exc:
            if exc.err_code == _STREAM_NOT_FOUND:
                raise ConfigurationError(
                    f"no stream {stream!r}; call ensure_stream() first"
                ) from None
            existing = None
        except _ERRORS as exc:
            raise js_error(exc, f"open consumer {config.name!r}") from exc
        if existing is not None:
            have = existing.config.filter_subject or ""
            if have != filt:
                raise ConfigurationError(
                    f"consumer {config.name!r} of {stream!r} exists with filter "
                    f"{have[len(self._subject_prefix(stream)) :]!r}, not "
                    f"{config.filter_subject!r}; delete it first"
                )
            cfg: api.ConsumerConfig | None = existing.config.evolve(
                name=config.name, max_ack_pending=config.max_ack_pending, ack_wait=config.ack_wait
            )
            if _same(existing.config, config):
                cfg = None  # nothing to change: no create request at all
        else:
            cfg = api.ConsumerConfig(
                # ``name`` makes nats-py use ``CONSUMER.CREATE.<stream>.<name>.<filter>``:
                # the filter is in the subject, where the broker's permissions see it
                name=config.name,
                durable_name=config.name,
                deliver_policy=_DELIVER[config.deliver],
                ack_policy=api.AckPolicy.EXPLICIT,
                ack_wait=config.ack_wait,
                max_ack_pending=config.max_ack_pending,
                max_deliver=-1,  # retry limits are pub/sub policy, not the engine's
                filter_subject=filt,
                inactive_threshold=config.inactive_threshold,
            )
            if config.deliver == "by_start_sequence":
                cfg = cfg.evolve(opt_start_seq=max(config.opt_start_seq or 1, 1))
            elif config.deliver == "by_start_time":
                when = config.opt_start_time or 0.0
                cfg = cfg.evolve(opt_start_time=datetime.datetime.fromtimestamp(when, datetime.UTC))
        try:
            if cfg is not None:
                await jsm.add_consumer(js_name, cfg)
            psub = await self._js().pull_subscribe_bind(durable=config.name, stream=js_name)
        except _ERRORS as exc:
            raise js_error(exc, f"open consumer {config.name!r}") from exc
        return _NatsConsumer(self, stream, config.name, psub)

    async def delete_consumer(self, stream: str, name: str) -> bool:
        js_name = self._js_stream(stream)
        try:
            return bool(await self._jsm().delete_consumer(js_name, name))
        except nats.js.errors.NotFoundError as exc:
            if exc.err_code == _STREAM_NOT_FOUND:
                raise ConfigurationError(
                    f"no stream {stream!r}; call ensure_stream() first"
                ) from None
            return False
        except _ERRORS as exc:
            raise js_error(exc, f"delete consumer {name!r}") from exc
