"""The frozen snapshot of one agent's counters (``Agent.statistics()``)."""

from __future__ import annotations

import msgspec

__all__ = ["AgentStatistics"]


class AgentStatistics(msgspec.Struct, frozen=True):
    """A frozen snapshot of one agent's counters (see :meth:`Agent.statistics`).

    Example::

        stats = agent.statistics(); print(stats.handled, stats.failed)
    """

    name: str
    handlers: tuple[str, ...]
    running: bool
    queued: int
    mailbox_size: int
    in_flight: int
    received: int
    handled: int
    failed: int
    rejected: int
    expired: int
    sent: int
    requested: int
    #: Runs stopped by their caller's cancel (their answer was never sent).
    cancelled: int = 0
