"""The stream half of the in-memory transport (see :class:`~.base.EventLog`).

A real engine, not a mock: bounded retention (count, bytes, age), a dedupe window,
durable consumers with start positions, ``max_ack_pending``, ``ack_wait``,
ack / nak(delay) / term and delivery counts, shared by several handles (groups).
The state lives in the transport object, so a runtime started again on the same
``MemoryTransport`` finds its streams, consumers and unacked messages.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from agentcomm.core.errors import ConfigurationError
from agentcomm.core.limits import ENGINE_MAX_PAYLOAD, too_large
from agentcomm.core.topics import check_pattern, compile_pattern
from agentcomm.transports.memory.consumers import _Consumer, _MemoryConsumerHandle
from agentcomm.transports.memory.store import _Entry, _Stream
from agentcomm.transports.streams import (
    ConsumerConfig,
    LogConsumer,
    StreamConfig,
    StreamInfo,
)

if TYPE_CHECKING:
    from agentcomm.core.envelope import Envelope

__all__ = ["MemoryEventLog"]

from agentcomm.transports.memory.store import _replace, _size


class MemoryEventLog:
    """In-memory retained event logs and durable consumers (the EventLog contract).

    Example::

        t = MemoryTransport()
        await t.ensure_stream(StreamConfig(name="EVENTS"))
    """

    #: The largest payload stored (see :class:`MemoryTransport`).
    max_payload: int = ENGINE_MAX_PAYLOAD

    def __init__(self) -> None:
        self._streams: dict[str, _Stream] = {}

    def _stream(self, name: str) -> _Stream:
        st = self._streams.get(name)
        if st is None:
            raise ConfigurationError(f"no stream named {name!r}; call ensure_stream() first")
        return st

    async def ensure_stream(self, config: StreamConfig) -> StreamInfo:
        for what, value in (("max_msgs", config.max_msgs), ("max_bytes", config.max_bytes)):
            if value < 1:
                raise ConfigurationError(f"stream {config.name!r}: {what} must be >= 1")
        if config.duplicate_window <= 0 or (config.max_age is not None and config.max_age <= 0):
            raise ConfigurationError(
                f"stream {config.name!r}: max_age and duplicate_window must be positive seconds"
            )
        st = self._streams.get(config.name)
        if st is None:
            st = self._streams[config.name] = _Stream(config)
        else:
            st.config = config
        return st.info()

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
        if len(envelope.payload) > self.max_payload:
            raise too_large(f"event on {envelope.topic!r}", len(envelope.payload), self.max_payload)
        st = self._streams.get(stream) or self._stream(stream)
        subject = subject or envelope.topic
        if subject is None:
            raise ConfigurationError("an appended envelope needs a topic (its subject)")
        now = time.time()
        if msg_id is not None:
            seen = st.dedupe.get(msg_id)
            if seen is not None and seen[1] >= now - st.window:
                return seen[0], True
        seq = st.last_seq + 1
        st.last_seq = seq
        e = _Entry(
            seq,
            _replace(envelope, sequence=seq),
            subject,
            now,
            _size(envelope, subject),
        )
        entries = st.entries
        entries[seq] = e
        st.order.append(e)
        st.bytes += e.size
        if msg_id is not None:
            st.dedupe[msg_id] = (seq, now)
            st.dedupe_order.append((msg_id, now))
        cfg = st.config
        if len(entries) > cfg.max_msgs:  # the steady state at the count limit: drop the oldest
            old = st.order.popleft()
            if entries.get(old.seq) is old:
                del entries[old.seq]
                st.bytes -= old.size
        if (
            len(entries) > cfg.max_msgs
            or st.bytes > cfg.max_bytes
            or cfg.max_age is not None
            or st.dedupe_order
        ):
            st.enforce(now)
        for c in st.consumers.values():
            if c.waiters and c.matches(subject):
                c.wake()
        return seq, False

    async def stream_info(self, stream: str) -> StreamInfo:
        return self._stream(stream).info()

    async def get_message(self, stream: str, sequence: int) -> Envelope | None:
        st = self._stream(stream)
        st.enforce(time.time())
        e = st.entries.get(sequence)
        return None if e is None else e.env

    async def read_messages(
        self, stream: str, *, start_seq: int = 1, limit: int = 100, filter_subject: str = ">"
    ) -> list[Envelope]:
        st = self._stream(stream)
        st.enforce(time.time())
        match = compile_pattern(filter_subject)
        out: list[Envelope] = []
        if limit < 1:
            return out
        for e in st.entries.values():
            if e.seq >= start_seq and match(e.subject):
                out.append(e.env)
                if len(out) >= limit:
                    break
        return out

    async def delete_message(self, stream: str, sequence: int) -> bool:
        return self._stream(stream).remove(sequence) is not None

    async def open_consumer(self, stream: str, config: ConsumerConfig) -> LogConsumer:
        st = self._stream(stream)
        check_pattern(config.filter_subject)
        if config.max_ack_pending < 1 or config.ack_wait <= 0:
            raise ConfigurationError(
                f"consumer {config.name!r}: max_ack_pending must be >= 1 and ack_wait positive"
            )
        c = st.consumers.get(config.name)
        if c is None:
            c = st.consumers[config.name] = _Consumer(st, config)
        else:
            if c.config.filter_subject != config.filter_subject:
                raise ConfigurationError(
                    f"consumer {config.name!r} already filters {c.config.filter_subject!r}, "
                    f"not {config.filter_subject!r}; delete it first or use another name"
                )
            c.config = _replace(
                c.config, max_ack_pending=config.max_ack_pending, ack_wait=config.ack_wait
            )
        return _MemoryConsumerHandle(c)

    async def delete_consumer(self, stream: str, name: str) -> bool:
        st = self._stream(stream)
        c = st.consumers.pop(name, None)
        if c is None:
            return False
        c.deleted = True
        c.wake()
        return True
