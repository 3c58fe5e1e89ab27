"""Counters of durable tasks in one runtime (``rt.tasks.statistics()``, metrics)."""

from __future__ import annotations

import msgspec

__all__ = ["TaskCounters", "TaskStatistics"]


class TaskStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """A frozen snapshot of one runtime's durable tasks.

    ``started``: tasks its agents started (as callers); the rest counts its workers:
    ``runs`` (each attempt, re-runs included), ``completed``, ``failed``, ``canceled``,
    ``rerun`` (attempts after a lost worker), ``lost`` (failed because a worker was
    lost and the policy or the attempts said so), ``refused`` (work the guard refused:
    unsigned, forged, over a limit, not allowed) and ``running`` now.

    Example::

        s = rt.tasks.statistics(); print(s.running, s.completed, s.failed)
    """

    started: int = 0
    runs: int = 0
    completed: int = 0
    failed: int = 0
    canceled: int = 0
    rerun: int = 0
    lost: int = 0
    refused: int = 0
    running: int = 0


class TaskCounters:
    """The mutable counters behind :class:`TaskStatistics` (one per worker)."""

    __slots__ = ("canceled", "completed", "failed", "lost", "refused", "rerun", "runs")

    def __init__(self) -> None:
        self.runs = self.completed = self.failed = self.canceled = 0
        self.rerun = self.lost = self.refused = 0

    def ended(self, state: str) -> None:
        """Count a run that ended in ``state``."""
        if state == "completed":
            self.completed += 1
        elif state == "failed":
            self.failed += 1
        elif state == "canceled":
            self.canceled += 1
