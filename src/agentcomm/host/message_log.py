"""The bounded record of recent envelopes a runtime keeps, for debugging."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from agentcomm.core.envelope import Envelope
from agentcomm.core.errors import ConfigurationError

__all__ = ["MessageLog"]


class MessageLog:
    """A bounded record of recent envelopes, for debugging (by count and by age).

    Example::

        for env in rt.message_log.recent(20):
            print(env.sender, "->", env.recipient or env.topic, env.kind)
    """

    __slots__ = ("_entries", "append", "max_age")

    def __init__(self, size: int = 1000, max_age: float | None = None) -> None:
        if size < 0:
            raise ConfigurationError(f"log size must be >= 0, got {size}")
        self._entries: deque[Envelope] = deque(maxlen=size)
        self.max_age = max_age
        #: Record one envelope (the oldest falls off when full); the deque's own append.
        self.append: Callable[[Envelope], None] = self._entries.append

    def recent(self, limit: int | None = None) -> list[Envelope]:
        """Envelopes still within the bounds, oldest first (at most ``limit``).

        Example::

            last = rt.message_log.recent(1)
        """
        if self.max_age is not None:
            cutoff = time.time() - self.max_age
            while self._entries and self._entries[0].created < cutoff:
                self._entries.popleft()
        items = list(self._entries)
        return items if limit is None else items[-limit:] if limit else []

    def __len__(self) -> int:
        return len(self._entries)
