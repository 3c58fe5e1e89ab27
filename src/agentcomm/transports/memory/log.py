"""The stream half of the in-memory transport (see :class:`~.base.EventLog`).

A real engine, not a mock: bounded retention (count, bytes, age), a dedupe window,
durable consumers with start positions, ``max_ack_pending``, ``ack_wait``,
ack / nak(delay) / term and delivery counts, shared by several handles (groups).
The state lives in the transport object, so a runtime started again on the same
``MemoryTransport`` finds its streams, consumers and unacked messages.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

import msgspec

from agentcomm.core.errors import ConfigurationError
from agentcomm.core.topics import check_pattern, compile_pattern
from agentcomm.transports.streams import (
    ConsumerConfig,
    ConsumerInfo,
    LogConsumer,
    LogMessage,
    StreamConfig,
    StreamInfo,
)

if TYPE_CHECKING:
    from agentcomm.core.envelope import Envelope

__all__ = ["MemoryEventLog"]

_OVERHEAD = 64  # bytes counted per stored message on top of payload and subject
_LAG_SCAN = 10_000  # entries scanned at most to count a filtered consumer's lag
_replace = msgspec.structs.replace


class _Entry(msgspec.Struct, gc=False):
    """One stored message. Not tracked by the cyclic GC (it holds no cycles), so a
    large retained log does not make every garbage collection slower."""

    seq: int
    env: Envelope
    subject: str
    time: float
    size: int


class _Stream:
    # `entries` finds a message by sequence; `order` holds them oldest first, so the
    # oldest is found in O(1) (popping from the front of a dict and then asking for
    # its first key walks over every deleted slot). Deleted entries are skipped lazily.
    __slots__ = (
        "bytes",
        "config",
        "consumers",
        "dedupe",
        "dedupe_order",
        "entries",
        "last_seq",
        "order",
    )

    def __init__(self, config: StreamConfig) -> None:
        self.config = config
        self.entries: dict[int, _Entry] = {}
        self.order: deque[_Entry] = deque()
        self.last_seq = 0
        self.bytes = 0
        self.dedupe: dict[str, tuple[int, float]] = {}
        self.dedupe_order: deque[tuple[str, float]] = deque()
        self.consumers: dict[str, _Consumer] = {}

    def _head(self) -> _Entry | None:
        order, entries = self.order, self.entries
        while order:
            e = order[0]
            if entries.get(e.seq) is e:
                return e
            order.popleft()
        return None

    @property
    def first_seq(self) -> int:
        e = self._head()
        return self.last_seq + 1 if e is None else e.seq

    def remove(self, seq: int) -> _Entry | None:
        e = self.entries.pop(seq, None)
        if e is not None:
            self.bytes -= e.size
            if len(self.order) > 2 * len(self.entries) + 64:  # many deleted in the middle
                self.order = deque(self.entries.values())
        return e

    def enforce(self, now: float) -> None:
        cfg = self.config
        entries = self.entries
        while entries and (len(entries) > cfg.max_msgs or self.bytes > cfg.max_bytes):
            e = self._head()
            assert e is not None
            self.order.popleft()
            del entries[e.seq]
            self.bytes -= e.size
        if cfg.max_age is not None:
            cutoff = now - cfg.max_age
            while (e := self._head()) is not None and e.time < cutoff:
                self.order.popleft()
                del entries[e.seq]
                self.bytes -= e.size
        dedupe, dorder = self.dedupe, self.dedupe_order
        if dorder:
            cutoff = now - cfg.duplicate_window
            limit = max(cfg.max_msgs, 1)
            while dorder and (dorder[0][1] < cutoff or len(dedupe) > limit):
                key, stamp = dorder.popleft()
                seen = dedupe.get(key)
                if seen is not None and seen[1] == stamp:
                    del dedupe[key]

    def info(self) -> StreamInfo:
        self.enforce(time.time())
        return StreamInfo(
            name=self.config.name,
            messages=len(self.entries),
            bytes=self.bytes,
            first_seq=self.first_seq,
            last_seq=self.last_seq,
        )


class _MemoryMessage(LogMessage):
    """A delivered message; also the consumer's record of it until it is settled."""

    __slots__ = (
        "_consumer",
        "deadline",
        "envelope",
        "handle",
        "num_delivered",
        "sequence",
        "settled",
        "token",
    )

    def __init__(
        self,
        consumer: _Consumer,
        seq: int,
        env: Envelope,
        deadline: float,
        handle: _MemoryConsumerHandle | None,
    ) -> None:
        self._consumer = consumer
        self.sequence = seq
        self.envelope = env
        self.num_delivered = 1
        self.deadline = deadline
        self.handle = handle
        self.settled = False
        self.token = 0

    async def ack(self) -> None:
        self._consumer.settle(self)

    async def term(self) -> None:
        self._consumer.settle(self)

    async def nak(self, delay: float | None = None) -> None:
        if not self.settled:
            self._consumer.nak(self, delay)

    async def in_progress(self) -> None:
        if not self.settled:
            self._consumer.touch(self)


class _Consumer:
    """The state of one durable consumer (shared by its handles)."""

    def __init__(self, stream: _Stream, config: ConsumerConfig) -> None:
        self.stream = stream
        self.config = config
        self._match: Callable[[str], bool] = compile_pattern(config.filter_subject)
        self._match_cache: dict[str, bool] = {}
        f = config.filter_subject
        self.matches: Callable[[str], bool] = self._cached_match
        if f == ">":
            self.matches = _always
        elif "*" not in f and ">" not in f:
            self.matches = f.__eq__
        self.delivered: dict[int, _MemoryMessage] = {}  # out with a handle, in delivery order
        self.naked: dict[int, _MemoryMessage] = {}  # waiting for a delayed redelivery
        self.timers: list[tuple[float, int, int]] = []  # (due, seq, token) heap
        self.due: deque[_MemoryMessage] = deque()  # to redeliver now
        self.waiters: list[asyncio.Future[None]] = []
        self.num_redelivered = 0
        self.delivered_seq = 0
        self.deleted = False
        self.next_seq = self._start_seq()

    def _start_seq(self) -> int:
        cfg, st = self.config, self.stream
        if cfg.deliver == "all":
            return st.first_seq
        if cfg.deliver == "by_start_sequence":
            return max(cfg.opt_start_seq or 1, st.first_seq)
        if cfg.deliver == "by_start_time":
            t = cfg.opt_start_time or 0.0
            for e in st.entries.values():
                if e.time >= t:
                    return e.seq
        return st.last_seq + 1

    def _cached_match(self, subject: str) -> bool:
        cache = self._match_cache
        hit = cache.get(subject)
        if hit is None:
            if len(cache) >= 4096:
                cache.clear()
            hit = cache[subject] = self._match(subject)
        return hit

    @property
    def outstanding(self) -> int:
        return len(self.delivered) + len(self.naked) + len(self.due)

    def wake(self) -> None:
        waiters = self.waiters
        if waiters:
            self.waiters = []
            for f in waiters:
                if not f.done():
                    f.set_result(None)

    def settle(self, p: _MemoryMessage) -> None:
        if p.settled:
            return
        p.settled = True
        p.token += 1
        delivered = self.delivered
        if self.waiters and self.outstanding >= self.config.max_ack_pending:
            self.wake()  # a fetch waits for room
        if delivered.pop(p.sequence, None) is None:
            self.naked.pop(p.sequence, None)

    def nak(self, p: _MemoryMessage, delay: float | None) -> None:
        if self.delivered.pop(p.sequence, None) is None:
            return  # not out with a handle (already due again, or waiting)
        p.token += 1
        p.handle = None
        if delay is None or delay <= 0:
            self.due.append(p)
        else:
            self.naked[p.sequence] = p
            loop_now = asyncio.get_running_loop().time()
            heapq.heappush(self.timers, (loop_now + delay, p.sequence, p.token))
        self.wake()

    def touch(self, p: _MemoryMessage) -> None:
        if self.delivered.pop(p.sequence, None) is not None:
            p.deadline = asyncio.get_running_loop().time() + self.config.ack_wait
            self.delivered[p.sequence] = p

    def release(self, handle: _MemoryConsumerHandle) -> None:
        """A handle closed: what it holds unsettled is due again at once."""
        for p in [p for p in self.delivered.values() if p.handle is handle]:
            del self.delivered[p.sequence]
            p.token += 1
            p.handle = None
            self.due.append(p)
        self.wake()

    def collect(self, handle: _MemoryConsumerHandle, limit: int) -> list[LogMessage]:
        loop_now = asyncio.get_running_loop().time()
        out: list[LogMessage] = []
        delivered = self.delivered
        while delivered:  # ack_wait expired
            p = next(iter(delivered.values()))
            if p.deadline > loop_now:
                break
            del delivered[p.sequence]
            p.token += 1
            self.due.append(p)
        timers = self.timers
        while timers and timers[0][0] <= loop_now:
            _, seq, token = heapq.heappop(timers)
            p2 = self.naked.get(seq)
            if p2 is not None and p2.token == token:
                del self.naked[seq]
                self.due.append(p2)
        entries = self.stream.entries
        due = self.due
        ack_wait = self.config.ack_wait
        while due and len(out) < limit:
            p = due.popleft()
            if p.settled:
                continue
            e = entries.get(p.sequence)
            if e is None:  # dropped by retention or deleted: nothing left to deliver
                p.settled = True
                continue
            p.num_delivered += 1
            p.token += 1
            p.deadline = loop_now + ack_wait
            p.handle = handle
            delivered[p.sequence] = p
            self.num_redelivered += 1
            out.append(p)
        last = self.stream.last_seq
        seq = self.next_seq
        room = min(limit - len(out), self.config.max_ack_pending - self.outstanding)
        if seq <= last and room > 0:
            first = self.stream.first_seq
            if seq < first:
                seq = first
            matches = self.matches
            deadline = loop_now + ack_wait
            append = out.append
            while seq <= last and room > 0:
                e = entries.get(seq)
                seq += 1
                if e is None or not matches(e.subject):
                    continue
                p = _MemoryMessage(self, e.seq, e.env, deadline, handle)
                delivered[e.seq] = p
                append(p)
                room -= 1
            self.next_seq = seq
            if out:
                self.delivered_seq = out[-1].sequence
        return out

    def next_timer(self) -> float | None:
        t: float | None = None
        if self.timers:
            t = self.timers[0][0]
        if self.delivered:
            d = next(iter(self.delivered.values())).deadline
            t = d if t is None or d < t else t
        return t

    def info(self) -> ConsumerInfo:
        st = self.stream
        seq = max(self.next_seq, st.first_seq)
        ahead = min(st.last_seq - seq + 1, len(st.entries)) if seq <= st.last_seq else 0
        if ahead and self.config.filter_subject != ">":
            # Count the matches among the newest `ahead` entries; past _LAG_SCAN of them,
            # extrapolate from those scanned (lag is a gauge, not an invariant).
            scanned = hits = 0
            for e in reversed(st.order):
                if e.seq < seq or scanned >= _LAG_SCAN:
                    break
                if st.entries.get(e.seq) is not e:
                    continue
                scanned += 1
                hits += self.matches(e.subject)
            ahead = hits if scanned >= ahead or not scanned else round(hits * ahead / scanned)
        pending = ahead
        unsettled = [*self.delivered, *self.naked, *(p.sequence for p in self.due if not p.settled)]
        floor = (min(unsettled) - 1) if unsettled else self.next_seq - 1
        return ConsumerInfo(
            name=self.config.name,
            stream=st.config.name,
            filter_subject=self.config.filter_subject,
            num_pending=pending,
            num_ack_pending=len(unsettled),
            num_redelivered=self.num_redelivered,
            delivered_seq=self.delivered_seq,
            ack_floor=max(floor, 0),
        )


class _MemoryConsumerHandle(LogConsumer):
    __slots__ = ("_closed", "_consumer", "name")

    def __init__(self, consumer: _Consumer) -> None:
        self._consumer = consumer
        self._closed = False
        self.name = consumer.config.name

    async def fetch(self, max_messages: int, timeout: float) -> list[LogMessage]:
        c = self._consumer
        if max_messages < 1:
            raise ConfigurationError(f"max_messages must be at least 1, got {max_messages}")
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while True:
            if self._closed or c.deleted:
                return []
            out = c.collect(self, max_messages)
            if out:
                return out
            now = loop.time()
            wait = end - now
            if wait <= 0:
                return []
            t = c.next_timer()
            if t is not None and t - now < wait:
                wait = max(t - now, 0.0)
            fut: asyncio.Future[None] = loop.create_future()
            c.waiters.append(fut)
            handle = loop.call_later(wait, _resolve, fut)
            try:
                await fut
            finally:
                handle.cancel()

    async def info(self) -> ConsumerInfo:
        return self._consumer.info()

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._consumer.release(self)


def _always(subject: str) -> bool:
    return True


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class MemoryEventLog:
    """In-memory retained event logs and durable consumers (the EventLog contract).

    Example::

        t = MemoryTransport()
        await t.ensure_stream(StreamConfig(name="EVENTS"))
    """

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

    async def append(self, stream: str, envelope: Envelope, *, msg_id: str | None = None) -> int:
        return (await self.append_checked(stream, envelope, msg_id=msg_id))[0]

    async def append_checked(
        self, stream: str, envelope: Envelope, *, msg_id: str | None = None
    ) -> tuple[int, bool]:
        st = self._streams.get(stream) or self._stream(stream)
        subject = envelope.topic
        if subject is None:
            raise ConfigurationError("an appended envelope needs a topic (its subject)")
        now = time.time()
        if msg_id is not None:
            seen = st.dedupe.get(msg_id)
            if seen is not None and seen[1] >= now - st.config.duplicate_window:
                return seen[0], True
        seq = st.last_seq + 1
        st.last_seq = seq
        e = _Entry(
            seq,
            _replace(envelope, sequence=seq),
            subject,
            now,
            len(envelope.payload) + len(subject) + _OVERHEAD,
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
