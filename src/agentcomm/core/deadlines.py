"""Coalesced deadlines: one loop timer per time slot instead of one per operation.

Deadlines are wall-clock times (``time.time()``), like the ``deadline`` field of an
envelope, so the hot path registers an envelope's own deadline without reading a
clock.

Request timeouts and receiver-side handler deadlines are on the hot path; an
``asyncio.timeout`` or ``loop.call_later`` per message costs more than the rest of a
round trip. A :class:`DeadlineWheel` groups deadlines into slots of ``resolution``
seconds and arms a single timer per slot; an entry removes itself when its work ends,
so memory is bounded by the work in flight. A deadline fires at most ``resolution``
seconds late, never early.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from typing import Protocol

__all__ = ["DeadlineWheel", "Expirable", "check_seconds", "wheel_for"]


def check_seconds(value: object, name: str = "timeout") -> float:
    """``value`` as a number of seconds, or a :class:`ConfigurationError` naming ``name``.

    A duration is a finite ``int`` or ``float`` of at least zero (``0``: already due):
    ``"5"``, ``nan``, ``inf``, ``-1`` and ``True`` are refused with a message that says so.

    Example::

        timeout = check_seconds(timeout)          # at the call, before any I/O
        ttl = check_seconds(ttl, "ttl")
    """
    if type(value) is float or type(value) is int:
        if 0 <= value < 1e9:  # NaN fails every comparison; 1e9 s is 31 years
            return float(value)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        return check_seconds(float(value), name)
    from agentcomm.core.errors import ConfigurationError

    raise ConfigurationError(
        f"{name} must be a number of seconds, 0 or more (and finite), got {value!r}"
    )


class Expirable(Protocol):
    """Something the wheel can expire: a pending request, a running handler."""

    def expire(self) -> None:
        """Called once when its deadline passed (and it was not discarded before)."""
        ...


class DeadlineWheel:
    """Coalesces deadlines into ``resolution``-second slots on one event loop.

    Example::

        wheel = DeadlineWheel(loop)
        slot = wheel.add(entry, time.time() + 5.0)
        ...                     # work completes
        wheel.discard(entry, slot)
    """

    __slots__ = ("_inverse", "_loop", "_resolution", "_slots")

    def __init__(self, loop: asyncio.AbstractEventLoop, resolution: float = 0.005) -> None:
        self._loop = loop
        self._resolution = resolution
        self._inverse = 1.0 / resolution
        self._slots: dict[int, set[Expirable]] = {}

    def add(self, entry: Expirable, when: float) -> int:
        """Register ``entry`` to expire at wall-clock time ``when``; returns its slot key."""
        key = int(when * self._inverse) + 1  # the slot ending after ``when``: never early
        bucket = self._slots.get(key)
        if bucket is None:
            bucket = self._slots[key] = set()
            delay = key * self._resolution - time.time()
            self._loop.call_later(delay if delay > 0 else 0, self._fire, key)
        bucket.add(entry)
        return key

    def discard(self, entry: Expirable, key: int) -> None:
        """Forget ``entry`` (its work finished before the deadline)."""
        bucket = self._slots.get(key)
        if bucket is not None:
            bucket.discard(entry)

    def _fire(self, key: int) -> None:
        bucket = self._slots.pop(key, None)
        if bucket:
            for entry in bucket:
                entry.expire()

    def __len__(self) -> int:
        return sum(len(b) for b in self._slots.values())


_wheels: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, DeadlineWheel] = (
    weakref.WeakKeyDictionary()
)


def wheel_for(loop: asyncio.AbstractEventLoop) -> DeadlineWheel:
    """The shared wheel of ``loop`` (created on first use, gone with the loop)."""
    wheel = _wheels.get(loop)
    if wheel is None:
        wheel = _wheels[loop] = DeadlineWheel(loop)
    return wheel
