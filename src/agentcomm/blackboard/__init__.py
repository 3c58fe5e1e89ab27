"""The shared blackboard: versioned entries, compare-and-set, history, prefix watches.

A pattern over the host; imports the host, the transports and the core.
"""

from agentcomm.blackboard.board import (
    Blackboard,
    BoardStatistics,
    Change,
    Entry,
    Subscription,
    Watch,
    check_key,
    check_prefix,
)

__all__ = [
    "Blackboard",
    "BoardStatistics",
    "Change",
    "Entry",
    "Subscription",
    "Watch",
    "check_key",
    "check_prefix",
]
