"""Declaring task handlers (``@agent.task_handler``); started by :mod:`.service`.

A declaration is checked at once and kept on the agent
(``agent.declarations["tasks"]``) until a runtime's task service starts a worker
for that agent; an agent already running tells its runtime at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from agentcomm.core.errors import ConfigurationError
from agentcomm.core.names import check_name
from agentcomm.core.schema import HandlerSpec, inspect_handler

if TYPE_CHECKING:
    from agentcomm.host.agent import Agent

__all__ = ["DECLARATIONS", "OnLost", "TaskSpec", "declare_task", "task_specs"]

#: The key of the task declarations in ``Agent.declarations``.
DECLARATIONS = "tasks"

#: What a worker does with a task whose previous worker died: run it again, or fail it.
OnLost = Literal["retry", "fail"]

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """One declared task handler: its schema and its policy for lost workers."""

    name: str
    handler: HandlerSpec
    on_lost: OnLost
    max_attempts: int


def declare_task(
    agent: Agent, *, name: str | None = None, on_lost: OnLost = "retry", max_attempts: int = 3
) -> Callable[[F], F]:
    """The decorator behind :meth:`Agent.task_handler <agentcomm.api.agent.Agent.task_handler>`.

    The handler is a coroutine function (its return value is the task's result) or
    an async generator function (each chunk it yields is an ``artifact`` update; the
    result is ``None``). ``on_lost="retry"`` re-runs a task whose worker died, up to
    ``max_attempts`` runs in all; ``"fail"`` fails it (:class:`~agentcomm.errors.TaskLost`).

    Example::

        declare_task(agent, on_lost="fail")(research)
    """
    if on_lost not in ("retry", "fail"):
        raise ConfigurationError(f"on_lost must be 'retry' or 'fail', got {on_lost!r}")
    if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
        raise ConfigurationError(f"max_attempts must be an integer >= 1, got {max_attempts!r}")

    def register(fn: F) -> F:
        hname = check_name("handler", name or fn.__name__)
        spec = inspect_handler(fn, hname)
        if not (spec.is_async or spec.streams):
            raise ConfigurationError(
                f"task handler {hname!r} must be an async function or an async generator"
            )
        if any(s.name == hname for s in task_specs(agent)) or hname in agent.handlers:
            raise ConfigurationError(
                f"agent {agent.name!r} already has a handler named {hname!r}; "
                "pass name=... to tell them apart"
            )
        agent.declare(DECLARATIONS, TaskSpec(hname, spec, on_lost, max_attempts))
        return fn

    return register


def task_specs(agent: Agent) -> list[TaskSpec]:
    """The task handlers ``agent`` declared (a live list).

    Example::

        names = [s.name for s in task_specs(agent)]
    """
    specs: list[TaskSpec] = agent.declarations.get(DECLARATIONS, [])
    return specs


def has_tasks(agents: Iterable[Agent]) -> bool:
    """True when any of ``agents`` declared a task handler.

    Example::

        if has_tasks(rt.agents.values()): ...
    """
    return any(task_specs(a) for a in agents)
