"""The runtime's task service: starts tasks, re-attaches to them, runs the workers.

``Tasks.of(rt)`` is the runtime's single instance (an extension, created on first
use). The public Runtime registers its lifecycle hooks (``tasks_extension()``), so
an agent that declared task handlers gets a worker as soon as it runs.

Example::

    handle = await Tasks.of(rt).start_task("client", "researcher", "survey", {"topic": "tea"})
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import msgspec

from agentcomm.core.envelope import Envelope, encode_payload, new_id
from agentcomm.core.errors import ConfigurationError
from agentcomm.core.names import check_name
from agentcomm.host.extension import Extension
from agentcomm.tasks.declare import DECLARATIONS, has_tasks, task_specs
from agentcomm.tasks.handle import TaskHandle
from agentcomm.tasks.model import (
    TaskRecord,
    TaskRetention,
    TaskState,
    TaskStatus,
    new_task_id,
    now,
    work_subject,
)
from agentcomm.tasks.stats import TaskStatistics
from agentcomm.tasks.store import Store
from agentcomm.tasks.worker import Worker

if TYPE_CHECKING:
    from agentcomm.host.agent import Agent
    from agentcomm.host.runtime import Runtime

__all__ = ["Tasks", "tasks_extension"]

logger = logging.getLogger("agentcomm")


class Tasks:
    """Durable tasks on one runtime: start, re-attach, list; workers for task handlers.

    The retention comes from the runtime's ``task_retention`` (a
    :class:`~agentcomm.tasks.model.TaskRetention`), default otherwise.

    Example::

        for status in await rt.tasks.list(state="working"):
            print(status.id, status.progress)
    """

    def __init__(self, rt: Runtime) -> None:
        retention = getattr(rt, "task_retention", None)
        self.rt = rt
        self.retention = retention if isinstance(retention, TaskRetention) else TaskRetention()
        self.store = Store(rt.transport, self.retention)
        self._workers: dict[str, tuple[Worker, asyncio.Task[None]]] = {}
        self.started = 0

    @classmethod
    def of(cls, rt: Runtime) -> Tasks:
        """The runtime's task service (created on first use).

        Example::

            tasks = Tasks.of(rt)
        """
        tasks: Tasks = rt.extension("tasks", cls)
        return tasks

    # -- callers ---------------------------------------------------------------------
    async def start_task(
        self, caller: str, to: str, handler: str, payload: Any = None, *, returns: Any = None
    ) -> TaskHandle[Any]:
        """Store a new task and queue its work for ``to``; returns at once.

        Example::

            handle = await tasks.start_task("client", "researcher", "survey", {"topic": "x"})
        """
        check_name("agent", to)
        check_name("handler", handler)
        self.rt.authorize(caller, "send", f"{to}.{handler}")
        raw = encode_payload(payload)
        self.started += 1
        task_id = new_task_id()
        t = now()
        record = TaskRecord(
            id=task_id, agent=to, handler=handler, caller=caller, created=t, updated=t
        )
        await self.store.create(record)
        await self.store.note(record, "state")
        work = Envelope(
            id=new_id(),
            kind="event",
            sender=caller,
            recipient=to,
            handler=handler,
            topic=work_subject(to),
            key=task_id,
            payload=raw,
        )
        tracing = self.rt.tracing
        guard = self.rt.guard  # limits and signature, as for a request (docs/security.md)
        if tracing is None:
            await self.store.queue(work if guard is None else guard.seal(work))
        else:  # the task's runs continue this trace (docs/tracing.md)
            attrs = {"agentcomm.sender": caller, "agentcomm.task.id": task_id}
            with tracing.span("start_task", f"{to}.{handler}", kind="producer", attributes=attrs):
                tp, ts = tracing.current_traceparent()
                work = msgspec.structs.replace(work, traceparent=tp, tracestate=ts)
                await self.store.queue(work if guard is None else guard.seal(work))
                tracing.describe_current(work)
        return TaskHandle(self.store, task_id, caller, returns, self.rt.authorize)

    def statistics(self) -> TaskStatistics:
        """A frozen snapshot: tasks started here, and what this runtime's workers did.

        Example::

            print(rt.tasks.statistics().running)
        """
        counts = [w.counters for w, _ in self._workers.values()]
        return TaskStatistics(
            started=self.started,
            runs=sum(c.runs for c in counts),
            completed=sum(c.completed for c in counts),
            failed=sum(c.failed for c in counts),
            canceled=sum(c.canceled for c in counts),
            rerun=sum(c.rerun for c in counts),
            lost=sum(c.lost for c in counts),
            refused=sum(c.refused for c in counts),
            running=sum(len(w.runs) for w, _ in self._workers.values()),
        )

    def handle(self, caller: str, task_id: str, returns: Any = None) -> TaskHandle[Any]:
        """A handle on an existing task (no I/O: its methods raise UnknownTask if none).

        Example::

            handle = tasks.handle("client", saved_id)
        """
        if not isinstance(task_id, str) or not task_id:
            raise ConfigurationError(f"a task id is a non-empty string, got {task_id!r}")
        return TaskHandle(self.store, task_id, caller, returns, self.rt.authorize)

    async def list(self, state: TaskState | None = None) -> list[TaskStatus]:
        """The retained tasks (newest first), only those in ``state`` if given.

        Example::

            running = await rt.tasks.list(state="working")
        """
        records = await self.store.records()
        return [TaskStatus.of(r) for r in records if state is None or r.state == state]

    # -- workers ----------------------------------------------------------------------
    def start_workers(self, agents: Sequence[Agent]) -> None:
        """Start a worker for each of ``agents`` that declared task handlers."""
        for agent in agents:
            if task_specs(agent) and agent.name not in self._workers:
                worker = Worker(
                    agent, self.store, concurrency=agent.concurrency, lease=self.retention.lease
                )
                tg = self.rt.task_group
                task = tg.create_task(self._pump(worker, tg), name=f"agentcomm:tasks:{agent.name}")
                self._workers[agent.name] = (worker, task)

    async def _pump(self, worker: Worker, tg: asyncio.TaskGroup) -> None:
        try:
            await worker.pump(tg)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("tasks: the worker of %s stopped", worker.agent.name)

    async def stop_worker(self, agent: Agent) -> None:
        """Stop the worker of ``agent`` (its running tasks are released to other workers)."""
        got = self._workers.pop(agent.name, None)
        if got is None:
            return
        worker, task = got
        await worker.close()
        running = [r.task for r in worker.runs.values()]
        if running:
            await asyncio.wait(running, timeout=5.0)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def aclose(self) -> None:
        """Stop every worker (called by the runtime when it stops)."""
        for name in list(self._workers):
            worker = self._workers[name][0]
            await self.stop_worker(worker.agent)


async def _on_agents(rt: Runtime, agents: Sequence[Agent]) -> None:
    if has_tasks(agents):
        Tasks.of(rt).start_workers(agents)


def _on_declare(rt: Runtime, agent: Agent, kind: str) -> None:
    if kind == DECLARATIONS:
        Tasks.of(rt).start_workers([agent])


async def _on_detach(rt: Runtime, agent: Agent) -> None:
    tasks = rt.existing_extension("tasks")
    if isinstance(tasks, Tasks):
        await tasks.stop_worker(agent)


def tasks_extension() -> Extension[Runtime]:
    """The lifecycle hooks the public Runtime registers for durable tasks.

    Example::

        rt.register(tasks_extension())
    """
    return Extension("tasks", on_agents=_on_agents, on_detach=_on_detach, on_declare=_on_declare)
