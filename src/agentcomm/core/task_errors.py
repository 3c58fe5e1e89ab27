"""The errors of durable tasks (docs/streams-and-tasks.md), under :class:`TaskError`.

Part of the error tree drawn in :mod:`agentcomm.core.errors`; here so that module
stays small. All are exported from :mod:`agentcomm`.
"""

from __future__ import annotations

from agentcomm.core.errors import AgentCommError

__all__ = [
    "InputTimeout",
    "InvalidTransition",
    "TaskCancelled",
    "TaskError",
    "TaskFinished",
    "TaskLost",
    "TaskNotWaiting",
    "UnknownTask",
]


class TaskError(AgentCommError):
    """Base of the durable task errors (``docs/streams-and-tasks.md``).

    ``task_id`` names the task concerned.

    Example::

        try:
            await handle.answer("yes")
        except TaskError as exc:
            print(exc.task_id, exc)
    """

    def __init__(self, task_id: str, message: str) -> None:
        super().__init__(message)
        self.task_id = task_id


class UnknownTask(TaskError):
    """No task with that id: never started, or deleted by the retention.

    Example::

        await caller.task("no-such-id").status()  # raises UnknownTask
    """

    def __init__(self, task_id: str) -> None:
        super().__init__(
            task_id,
            f"no task {task_id!r}: it was never started here, or its retention has passed "
            "(check the id, or keep tasks longer with TaskRetention(max_age=...))",
        )


class InvalidTransition(TaskError):
    """A state change the task state machine does not allow (``state`` is the current one).

    Example::

        except InvalidTransition as exc:
            print("task is", exc.state)
    """

    def __init__(self, task_id: str, state: str, message: str) -> None:
        super().__init__(task_id, message)
        self.state = state


class TaskNotWaiting(InvalidTransition):
    """``answer()`` to a task that is not waiting for input (not ``input-required``).

    Example::

        await handle.answer("yes")  # raises TaskNotWaiting while the task is working
    """


class TaskFinished(InvalidTransition):
    """``cancel()`` or ``answer()`` on a task that already completed, failed or was canceled.

    Example::

        await handle.cancel()  # raises TaskFinished after the task completed
    """


class TaskCancelled(TaskError):
    """``result()`` of a task that was canceled (by ``handle.cancel()``).

    Example::

        try:
            await handle.result()
        except TaskCancelled:
            print("canceled")
    """


class TaskLost(TaskError):
    """The task's worker died (its lease ran out) and the policy said fail, or no
    attempts were left (``@agent.task_handler(on_lost=..., max_attempts=...)``).

    Example::

        except TaskLost as exc:
            print("worker lost:", exc)
    """


class InputTimeout(TaskError, TimeoutError):
    """``ctx.ask(...)`` got no valid answer within its timeout; raised in the handler.

    Example::

        try:
            ok = await ctx.ask("Proceed?", returns=bool, timeout=60)
        except InputTimeout:
            ok = False
    """
