"""What an exposure remembers beside the durable task store, internal.

The task store keeps every task's state, progress, question, artifacts and result
(the A2A task is rebuilt from it, so ``tasks/get`` and resubscription survive a
restart of the exposing process). A2A also has conversation ids and message
history, which the store has no field for: :class:`Conversations` keeps them, in
memory and bounded. A stream skill's run is not a durable task: :class:`Streams`
keeps the running ones (so ``tasks/cancel`` stops them) and the last snapshots of
finished ones (so ``tasks/get`` answers for a while).

Example::

    conv = Conversations(10_000); conv.start(task_id, context_id, message)
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import AsyncGenerator, AsyncIterator
from typing import TYPE_CHECKING, Any, cast

from a2a.types import a2a_pb2 as pb

from agentcomm.a2a.convert import artifact_event
from agentcomm.tasks.model import TERMINAL

if TYPE_CHECKING:
    from agentcomm.tasks.handle import TaskHandle
    from agentcomm.tasks.model import TaskStatus, TaskUpdate

__all__ = ["Conversations", "Streams", "artifacts_until", "follow"]

_HISTORY = 200  # messages kept per task


class Conversations:
    """Context id and message history of each task, the newest ``size`` tasks."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._tasks: OrderedDict[str, tuple[str, list[pb.Message]]] = OrderedDict()

    def start(self, task_id: str, context_id: str, first: pb.Message | None) -> None:
        """Remember a new task's conversation (and its first message)."""
        history = [first] if first is not None else []
        self._tasks[task_id] = (context_id, history)
        while len(self._tasks) > self._size:
            self._tasks.popitem(last=False)

    def context(self, task_id: str) -> str:
        """The task's context id (the task id when forgotten: stable across calls)."""
        entry = self._tasks.get(task_id)
        return entry[0] if entry is not None else task_id

    def add(self, task_id: str, message: pb.Message) -> None:
        """Append a message to the task's history (a question, an answer, a result)."""
        entry = self._tasks.get(task_id)
        if entry is None:
            self.start(task_id, task_id, None)
            entry = self._tasks[task_id]
        history = entry[1]
        if any(m.message_id == message.message_id for m in history[-3:]):
            return
        history.append(message)
        del history[:-_HISTORY]

    def history(self, task_id: str, length: int | None) -> list[pb.Message]:
        """The last ``length`` messages of the task (all when ``None``)."""
        entry = self._tasks.get(task_id)
        if entry is None:
            return []
        items = entry[1]
        return list(items if length is None else items[len(items) - length :] if length else [])


class Streams:
    """Running stream-skill runs (cancel them) and the last ``size`` finished ones."""

    def __init__(self, size: int) -> None:
        self._size = size
        self.running: dict[str, asyncio.Event] = {}
        self._done: OrderedDict[str, pb.Task] = OrderedDict()
        self._tasks: dict[str, pb.Task] = {}

    def begin(self, task: pb.Task) -> asyncio.Event:
        """A run starts: its snapshot and the event that asks it to stop."""
        stop = asyncio.Event()
        self.running[task.id] = stop
        self._tasks[task.id] = task
        return stop

    def snapshot(self, task_id: str) -> pb.Task | None:
        """The run's latest task (running or finished), if remembered."""
        return self._tasks.get(task_id) or self._done.get(task_id)

    def end(self, task: pb.Task) -> None:
        """A run ended: keep its final snapshot."""
        self.running.pop(task.id, None)
        self._tasks.pop(task.id, None)
        self._done[task.id] = task
        while len(self._done) > self._size:
            self._done.popitem(last=False)


async def artifacts_until(handle: TaskHandle[Any], status: TaskStatus) -> list[pb.Artifact]:
    """The artifacts of a task so far, read from its update log.

    Chunks join into one ``chunks`` artifact; the result is its own artifact. The
    log is read to the end for a finished task; for a running one, up to the
    status' cursor and whatever follows within a few milliseconds (the record's
    cursor may lag its last update by one).
    """
    if status.cursor <= 0 and status.state not in TERMINAL:
        return []
    chunks: pb.Artifact | None = None
    result: pb.Artifact | None = None
    done = status.state in TERMINAL
    async with contextlib.aclosing(_gen(handle.updates(since=0))) as updates:
        async for u in _bounded(updates, 10.0, status.cursor, done):
            if u.kind in ("artifact", "result"):
                ev = artifact_event(u, status.id, "", first=chunks is None)
                if u.kind == "result":
                    result = ev.artifact
                elif chunks is None:
                    chunks = ev.artifact
                else:
                    chunks.parts.extend(ev.artifact.parts)
            if u.final:
                break
    return [a for a in (chunks, result) if a is not None]


async def _bounded(
    it: AsyncIterator[TaskUpdate], seconds: float, cursor: int, done: bool
) -> AsyncIterator[TaskUpdate]:
    """``it`` until it ends, ``seconds`` pass, or (running task) it idles past ``cursor``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    last = 0
    while True:
        at = deadline if done or last < cursor else min(deadline, loop.time() + 0.02)
        try:
            async with asyncio.timeout_at(at):
                u = await anext(it)
        except (StopAsyncIteration, TimeoutError):
            return
        last = u.cursor
        yield u


def _gen(it: AsyncIterator[TaskUpdate]) -> AsyncGenerator[TaskUpdate, None]:
    """The update iterator as the generator it is (for ``aclosing``)."""
    return cast("AsyncGenerator[TaskUpdate, None]", it)


def interrupted(state: str) -> bool:
    """True for the states an A2A stream (or a blocking send) stops at."""
    return state in TERMINAL or state == "input-required"


async def follow(
    handle: TaskHandle[Any],
    since: int,
    *,
    answered: str | None = None,
    after: float | None = None,
) -> AsyncIterator[TaskUpdate]:
    """The task's updates after ``since``, until it ends or waits for input.

    A status' cursor may lag its record by an update, so a reader starting from it
    can see a question that was answered already: ``answered`` (that question's
    id) or ``after`` (the time of a status that was not waiting: any question
    asked before it is answered) skips it.
    """
    async with contextlib.aclosing(_gen(handle.updates(since=since))) as updates:
        async for u in updates:
            if u.state == "input-required" and u.kind == "state":
                if answered is not None and u.question is not None and u.question.id == answered:
                    continue
                if after is not None and u.time <= after:
                    continue
            yield u
            if interrupted(u.state) and u.kind != "progress":
                return
