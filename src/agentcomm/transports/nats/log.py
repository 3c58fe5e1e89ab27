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

import asyncio
import datetime
import logging
import re
from typing import TYPE_CHECKING

import msgspec
import nats.errors
import nats.js.errors
from nats.js import api

from agentcomm.core.envelope import decode_envelope, encode_envelope, invalid_frame
from agentcomm.core.errors import ConfigurationError, DecodeError
from agentcomm.transports.nats.admin import (
    Refused,
    Violations,
    differs,
    events_config,
    missing,
    put_stream,
)
from agentcomm.transports.nats.errors import js_error
from agentcomm.transports.streams import (
    ConsumerConfig,
    ConsumerInfo,
    LogConsumer,
    LogMessage,
    StreamConfig,
    StreamInfo,
)

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.aio.msg import Msg
    from nats.js.client import JetStreamContext
    from nats.js.manager import JetStreamManager

    from agentcomm.core.envelope import Envelope

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


_ERRORS = (nats.errors.Error, OSError)


class _NatsLogMessage(LogMessage):
    __slots__ = (
        "_handle",
        "_msg",
        "_settled",
        "envelope",
        "invalid",
        "num_delivered",
        "sequence",
    )

    def __init__(
        self,
        envelope: Envelope,
        sequence: int,
        delivered: int,
        msg: Msg,
        handle: _NatsConsumer,
        invalid: str | None = None,
    ) -> None:
        self.envelope = envelope
        self.invalid = invalid
        self.sequence = sequence
        self.num_delivered = delivered
        self._msg = msg
        self._handle = handle
        self._settled = False

    async def _settle(self, what: str, delay: float | None = None) -> None:
        if self._settled:
            return
        self._settled = True
        self._handle._unsettled.pop(self.sequence, None)
        try:
            if what == "ack":
                await self._msg.ack()
            elif what == "nak":
                await self._msg.nak(delay=delay)
            else:
                await self._msg.term()
        except nats.errors.MsgAlreadyAckdError:
            return
        except _ERRORS as exc:
            # The broker is unreachable: the message stays unsettled on the server and
            # comes back after ack_wait (at least once), so there is nothing to raise.
            logger.warning("%s of message %d not sent: %s", what, self.sequence, exc)

    async def ack(self) -> None:
        await self._settle("ack")

    async def nak(self, delay: float | None = None) -> None:
        await self._settle("nak", delay if delay is not None and delay > 0 else None)

    async def term(self) -> None:
        await self._settle("term")

    async def in_progress(self) -> None:
        if self._settled:
            return
        try:
            await self._msg.in_progress()
        except _ERRORS as exc:
            logger.warning("in_progress of message %d not sent: %s", self.sequence, exc)


class _NatsConsumer(LogConsumer):
    __slots__ = ("_log", "_psub", "_stream", "_unsettled", "name")

    def __init__(
        self, log: NatsEventLog, stream: str, name: str, psub: JetStreamContext.PullSubscription
    ) -> None:
        self.name = name
        self._log = log
        self._stream = stream
        self._psub: JetStreamContext.PullSubscription | None = psub
        # Fetched but not settled, bounded by the consumer's max_ack_pending.
        self._unsettled: dict[int, _NatsLogMessage] = {}

    async def fetch(self, max_messages: int, timeout: float) -> list[LogMessage]:
        psub = self._psub
        if psub is None:
            return []
        if max_messages < 1:
            raise ConfigurationError(f"max_messages must be at least 1, got {max_messages}")
        timeout = max(timeout, 0.01)
        try:
            raw = await psub.fetch(max_messages, timeout=timeout)
        except TimeoutError:  # nats-py raises its own and plain asyncio ones
            return []
        except _ERRORS as exc:
            # The broker is away (reconnecting, restarting) or the consumer was deleted:
            # nothing to deliver now. Wait out the timeout so callers do not spin.
            logger.warning("fetch from consumer %s failed: %r", self.name, exc)
            await asyncio.sleep(timeout)
            return []
        out: list[LogMessage] = []
        for m in raw:
            meta = m.metadata
            seq = meta.sequence.stream
            invalid = None
            try:
                env = msgspec.structs.replace(decode_envelope(m.data), sequence=seq)
            except DecodeError as exc:  # handed out as a stand-in, to be dead-lettered
                self._log._count_malformed("event", f"{self._stream} #{seq}", exc)
                invalid = str(exc)
                prefix = self._log._subject_prefix(self._stream)
                topic = m.subject[len(prefix) :] if m.subject.startswith(prefix) else m.subject
                env = invalid_frame(m.data, topic=topic, sequence=seq)
            lm = _NatsLogMessage(env, seq, meta.num_delivered, m, self, invalid)
            self._unsettled[seq] = lm
            out.append(lm)
        return out

    async def info(self) -> ConsumerInfo:
        log = self._log
        js_name = log._js_stream(self._stream)
        try:
            ci = await log._jsm().consumer_info(js_name, self.name)
        except _ERRORS as exc:
            raise js_error(exc, f"info of consumer {self.name!r}") from exc
        return log._consumer_info(self._stream, ci)

    async def close(self) -> None:
        psub, self._psub = self._psub, None
        if psub is None:
            return
        pending, self._unsettled = list(self._unsettled.values()), {}
        for lm in pending:  # due again at once rather than after ack_wait
            try:
                await lm.nak()
            except Exception as exc:
                logger.debug("nak on close failed: %s", exc)
        await self._nak_queued(psub)
        try:
            await psub.unsubscribe()
        except _ERRORS as exc:
            logger.debug("unsubscribe of consumer %s failed: %s", self.name, exc)
        await self._nak_queued(psub)

    @staticmethod
    async def _nak_queued(psub: JetStreamContext.PullSubscription) -> None:
        """Nak what the broker already sent to this handle but no fetch returned yet.

        nats-py keeps such messages (answers to an earlier pull) for the next fetch;
        once the handle is closed there is none, so hand them back at once rather
        than leaving them to ``ack_wait`` (a subscription restart reopens at once).
        """
        from nats.js.client import JetStreamContext

        queue = getattr(getattr(psub, "_sub", None), "_pending_queue", None)
        while isinstance(queue, asyncio.Queue) and not queue.empty():
            msg = queue.get_nowait()
            if JetStreamContext.is_status_msg(msg) is None:
                try:
                    await msg.nak()
                except Exception as exc:
                    logger.debug("nak on close failed: %s", exc)


def _same(have: api.ConsumerConfig, want: ConsumerConfig) -> bool:
    wait = have.ack_wait or 0.0
    return have.max_ack_pending == want.max_ack_pending and abs(wait - want.ack_wait) < 1e-6


class NatsEventLog:
    """JetStream streams and durable pull consumers for pub/sub (mixed into NatsTransport)."""

    namespace: str
    api_timeout: float
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
        want = events_config(self.namespace, config)
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

    async def append(self, stream: str, envelope: Envelope, *, msg_id: str | None = None) -> int:
        return (await self.append_checked(stream, envelope, msg_id=msg_id))[0]

    async def append_checked(
        self, stream: str, envelope: Envelope, *, msg_id: str | None = None
    ) -> tuple[int, bool]:
        js_name = self._js_stream(stream)
        topic = envelope.topic
        if not topic:
            raise ConfigurationError("an appended envelope needs a topic (its subject)")
        headers = {"Nats-Msg-Id": msg_id} if msg_id else None
        try:
            ack = await self._js().publish(
                self._subject_prefix(stream) + topic,
                encode_envelope(envelope),
                timeout=self.api_timeout,  # an event's deadline is its TTL, not this call's
                stream=js_name,
                headers=headers,
            )
        except nats.errors.BadSubjectError:
            raise ConfigurationError(f"topic {topic!r} is not a valid subject") from None
        except nats.js.errors.NoStreamResponseError as exc:
            # missing, or JetStream not answering yet after a restart: ask which
            await self._stream_missing(stream, js_name)
            raise js_error(exc, f"append to {stream!r}") from exc
        except _ERRORS as exc:
            raise js_error(exc, f"append to {stream!r}") from exc
        return ack.seq, bool(ack.duplicate)

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
