"""The in-memory event log's durable consumers: delivery, ack/nak/term, ack_wait redelivery."""

from __future__ import annotations

import asyncio
import heapq
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from agentcomm.core.errors import ConfigurationError
from agentcomm.core.topics import compile_pattern
from agentcomm.transports.memory.store import _Stream
from agentcomm.transports.streams import (
    ConsumerConfig,
    ConsumerInfo,
    LogConsumer,
    LogMessage,
)

if TYPE_CHECKING:
    from agentcomm.core.envelope import Envelope

__all__ = ["_Consumer", "_MemoryConsumerHandle", "_MemoryMessage", "_always"]

from agentcomm.transports.memory.store import _LAG_SCAN


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


class _MatchCache(dict[str, bool]):
    """Whether each subject matches a filter, computed once (at most 4,096 kept)."""

    __slots__ = ("_match",)

    def __init__(self, match: Callable[[str], bool]) -> None:
        super().__init__()
        self._match = match

    def __missing__(self, subject: str) -> bool:
        if len(self) >= 4096:
            self.clear()
        hit = self[subject] = self._match(subject)
        return hit


class _Consumer:
    """The state of one durable consumer (shared by its handles)."""

    def __init__(self, stream: _Stream, config: ConsumerConfig) -> None:
        self.stream = stream
        self.config = config
        f = config.filter_subject
        self._match_cache = _MatchCache(compile_pattern(f))
        # a hit is one C-level dict lookup (the subjects of a log repeat)
        self.matches: Callable[[str], bool] = self._match_cache.__getitem__
        if f == ">":
            self.matches = _always
        elif "*" not in f and ">" not in f:
            self.matches = f.__eq__
        self.delivered: dict[int, _MemoryMessage] = {}  # out with a handle, in delivery order
        self.naked: dict[int, _MemoryMessage] = {}  # waiting for a delayed redelivery
        self.timers: list[tuple[float, int, int]] = []  # (due, seq, token) heap
        self.due: deque[_MemoryMessage] = deque()  # to redeliver now
        self.waiters: list[asyncio.Future[None]] = []
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
        out = [*self.delivered.values(), *self.naked.values()]
        out += [p for p in self.due if not p.settled]
        unsettled = [p.sequence for p in out]
        floor = (min(unsettled) - 1) if unsettled else self.next_seq - 1
        return ConsumerInfo(
            name=self.config.name,
            stream=st.config.name,
            filter_subject=self.config.filter_subject,
            num_pending=pending,
            num_ack_pending=len(unsettled),
            num_redelivered=sum(p.num_delivered > 1 for p in out),
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
