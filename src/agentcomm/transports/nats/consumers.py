"""JetStream pull consumers behind the event log: fetch, ack/nak/term, in progress."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Protocol

import msgspec
import nats.errors
import nats.js.errors
from nats.js import api

from agentcomm.core.envelope import decode_envelope, invalid_frame
from agentcomm.core.errors import ConfigurationError, DecodeError
from agentcomm.transports.nats.errors import js_error
from agentcomm.transports.streams import (
    ConsumerConfig,
    ConsumerInfo,
    LogConsumer,
    LogMessage,
)

if TYPE_CHECKING:
    from nats.aio.msg import Msg
    from nats.js.client import JetStreamContext
    from nats.js.manager import JetStreamManager

    from agentcomm.core.envelope import Envelope

from agentcomm.transports.nats.errors import NATS_ERRORS as _ERRORS

__all__ = ["_NatsConsumer", "_NatsLogMessage", "_same"]

logger = logging.getLogger("agentcomm.nats")


class _Log(Protocol):
    """What a consumer handle uses of its event log (:class:`~.log.NatsEventLog`)."""

    def _count_malformed(self, kind: str, where: str, error: object) -> None: ...

    def _subject_prefix(self, stream: str) -> str: ...

    def _js_stream(self, stream: str) -> str: ...

    def _jsm(self) -> JetStreamManager: ...

    def _consumer_info(self, stream: str, ci: api.ConsumerInfo) -> ConsumerInfo: ...


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
        self, log: _Log, stream: str, name: str, psub: JetStreamContext.PullSubscription
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
