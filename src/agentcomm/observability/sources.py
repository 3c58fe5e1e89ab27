"""What observability reads of a runtime, through its public services only.

Metrics and presence report pub/sub and blackboard statistics; they never create
a pattern just to report on it, so they look up the instances that exist.

Example::

    snap = pubsub_statistics(rt)            # None until the runtime used pub/sub
    for board in board_statistics(rt): print(board.bucket, board.writes)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agentcomm.blackboard.board import Blackboard
from agentcomm.blackboard.core import DEFAULT_BUCKET, BoardStatistics
from agentcomm.pubsub.bus import PubSub
from agentcomm.pubsub.metrics import PubSubStatistics
from agentcomm.tasks.service import Tasks
from agentcomm.tasks.stats import TaskStatistics

if TYPE_CHECKING:
    from agentcomm.host.runtime import Runtime

__all__ = ["board_statistics", "pubsub_statistics", "task_statistics"]


def pubsub_statistics(rt: Runtime) -> PubSubStatistics | None:
    """The runtime's pub/sub statistics, or ``None`` when it has no pub/sub yet.

    Example::

        snap = pubsub_statistics(rt); print(snap and snap.published)
    """
    ps = rt.extension_of("pubsub", PubSub)
    return None if ps is None else ps.statistics()


def board_statistics(rt: Runtime) -> list[BoardStatistics]:
    """The statistics of every blackboard bucket the runtime opened, in opening order.

    Example::

        print([b.bucket for b in board_statistics(rt)])
    """
    out: list[BoardStatistics] = []
    for name, _ in rt.extensions():
        if name == "blackboard" or name.startswith("blackboard:"):
            bucket = DEFAULT_BUCKET if name == "blackboard" else name.partition(":")[2]
            out.append(Blackboard(rt, bucket=bucket).statistics())
    return out


def task_statistics(rt: Runtime) -> TaskStatistics | None:
    """The runtime's durable-task statistics, or ``None`` when it has used no tasks.

    Example::

        snap = task_statistics(rt); print(snap and snap.running)
    """
    tasks = rt.extension_of("tasks", Tasks)
    return None if tasks is None else tasks.statistics()
