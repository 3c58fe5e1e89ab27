"""Counting refused frames: bytes from the wire or a store that did not decode.

A hostile or broken peer can send any number of them, so each is counted by kind
and logged at most once per :attr:`Rejects.interval` per kind (with the number
refused since the previous warning), never with a traceback. The counts appear in
``rt.statistics().rejected_frames`` (and ``NatsTransport.statistics()``); the kinds
are listed in ``docs/security.md``.
"""

from __future__ import annotations

import logging
import time

__all__ = ["LOG_INTERVAL", "Rejects"]

#: Seconds between two warnings about refused frames of one kind.
LOG_INTERVAL = 10.0


class Rejects:
    """Refused frames by kind, with a rate-limited warning per kind.

    Example::

        rejects = Rejects(logging.getLogger("agentcomm"))
        rejects.add("request", "agentcomm.a.bob.r", "envelope is not valid JSON")
        assert rejects.snapshot() == {"request": 1}
    """

    __slots__ = ("_last", "_since", "counts", "interval", "logger")

    def __init__(self, logger: logging.Logger, interval: float = LOG_INTERVAL) -> None:
        self.logger = logger
        self.interval = interval
        #: Refused frames by kind since the start (the kinds are fixed by the code).
        self.counts: dict[str, int] = {}
        self._last: dict[str, float] = {}
        self._since: dict[str, int] = {}

    def add(self, kind: str, where: str, error: object) -> None:
        """Count one refused frame of ``kind`` seen at ``where`` (a subject, a key).

        Example::

            rejects.add("blackboard", "plan.goal", exc)
        """
        self.counts[kind] = self.counts.get(kind, 0) + 1
        since = self._since.get(kind, 0) + 1
        now = time.monotonic()
        last = self._last.get(kind)
        if last is not None and now - last < self.interval:
            self._since[kind] = since
            return
        self._last[kind] = now
        self._since[kind] = 0
        span = "" if last is None else f" in the last {now - last:.0f}s"
        self.logger.warning(
            "refused %d %s frame%s%s (not decodable, never fatal); the latest at %s: %s",
            since,
            kind,
            "" if since == 1 else "s",
            span,
            where,
            str(error)[:500].replace("\n", " "),  # bounded, one line: peers choose it
        )

    def snapshot(self) -> dict[str, int]:
        """A copy of the counts by kind.

        Example::

            print(rejects.snapshot().get("event", 0))
        """
        return dict(self.counts)

    def total(self, *kinds: str) -> int:
        """Refused frames of the given kinds (of every kind when none is given).

        Example::

            assert rejects.total("request", "notification") >= 0
        """
        if not kinds:
            return sum(self.counts.values())
        return sum(self.counts.get(k, 0) for k in kinds)
