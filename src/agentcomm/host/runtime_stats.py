"""The frozen snapshot of a runtime (``Runtime.statistics()``)."""

from __future__ import annotations

import msgspec

from agentcomm.host.agent_stats import AgentStatistics
from agentcomm.host.failures import FailureRecord

__all__ = ["RuntimeStatistics"]


class RuntimeStatistics(msgspec.Struct, frozen=True):
    """A frozen snapshot of the runtime and its agents.

    ``failures`` counts messages the runtime could not handle (notifications whose
    handler failed). ``rejected_frames`` counts, by kind, frames from the wire or a
    store that did not decode and were refused (``request``, ``notification``,
    ``direct``, ``reply``, ``event``, ``stream``, ``dead_letter``, ``blackboard``,
    ``presence``: see ``docs/security.md``); never fatal.

    ``errors`` is the bounded failure record by kind (a
    :class:`~agentcomm.host.failures.FailureRecord`: ``count``, ``last_error``,
    ``last_at``, ``last_subject``), including failures of background work that
    would otherwise only be logged. The kinds: ``message`` (what ``failures``
    counts), ``bind`` (an agent that could not be bound: it can only send),
    ``subscription_start`` (a subscription declared at run time that did not
    start), ``presence`` (a presence round that could not be written),
    ``mcp_notify`` (an MCP tool-list change notification that failed); ``other``
    once more than 32 kinds were seen.

    Example::

        snap = rt.statistics(); print(snap.transport, [a.name for a in snap.agents])
        print({kind: rec.count for kind, rec in snap.errors.items()})
    """

    transport: str
    running: bool
    agents: tuple[AgentStatistics, ...]
    messages_logged: int  # envelopes held in the bounded message log now
    failures: int
    rejected_frames: dict[str, int] = msgspec.field(default_factory=dict)
    errors: dict[str, FailureRecord] = msgspec.field(default_factory=dict)
