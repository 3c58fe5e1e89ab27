"""The in-memory event log's storage: one stream's bounded entries and retention."""

from __future__ import annotations

import time
from collections import deque
from typing import TYPE_CHECKING, Any

import msgspec

from agentcomm.transports.streams import (
    StreamConfig,
    StreamInfo,
)

if TYPE_CHECKING:
    from agentcomm.core.envelope import Envelope

__all__ = ["_Entry", "_Stream", "_size"]

#: Bytes a stored message takes besides its own strings and payload: the envelope
#: struct, the entry, the string and bytes objects' headers, its slots in the index
#: and the order (measured with tracemalloc on CPython 3.11: 530-600 bytes in all for
#: a small event, of which these are the fixed part; payload bytes count one and a
#: half times, as the encoder's buffers do). ``tests/transports/test_memory_bytes.py``
#: checks the estimate against tracemalloc.
_OVERHEAD = 560
_LAG_SCAN = 10_000  # entries scanned at most to count a filtered consumer's lag
_replace = msgspec.structs.replace


def _size(env: Envelope, subject: str) -> int:
    """What a stored copy of ``env`` costs in memory (what ``max_bytes`` bounds)."""
    size = _OVERHEAD + len(env.payload) * 3 // 2 + len(subject) + len(env.id)
    if env.key:
        size += len(env.key)
    headers = env.headers
    if headers:
        size += sum(len(k) + len(v) + 40 for k, v in headers.items())  # a dict slot each
    return size


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
        self.consumers: dict[str, Any] = {}  # name -> consumers._Consumer

    def _head(self) -> _Entry | None:
        order, entries = self.order, self.entries
        while order:
            e = order[0]
            if entries.get(e.seq) is e:
                return e
            order.popleft()
        return None

    @property
    def window(self) -> float:
        """The dedupe window in effect: never longer than the messages live (JetStream)."""
        cfg = self.config
        age = cfg.max_age
        return cfg.duplicate_window if age is None or age >= cfg.duplicate_window else age

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
            cutoff = now - self.window
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
