"""A caller's handle on a durable task: status, result, updates, cancel, answer.

A handle is only the task id and the store: ``caller.task(task_id)`` makes the same
handle in another process, and every method reads the durable record or the
update log, so nothing depends on the process that started the task.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import msgspec

from agentcomm.core.envelope import encode_payload
from agentcomm.core.errors import RequestTimeout, ValidationError
from agentcomm.core.schema import codec_for
from agentcomm.core.task_errors import TaskCancelled, TaskFinished, TaskLost, TaskNotWaiting
from agentcomm.tasks.model import TERMINAL, Answer, TaskRecord, TaskStatus, TaskUpdate

if TYPE_CHECKING:
    from agentcomm.tasks.store import Store

__all__ = ["TaskHandle"]

T = TypeVar("T")


class TaskHandle(Generic[T]):
    """A durable task seen by a caller (``await caller.start_task(...)``, ``caller.task(id)``).

    Example::

        handle = await client.start_task("researcher", "survey", {"topic": "tea"})
        async for u in handle.updates():
            print(u.cursor, u.kind, u.state, u.progress)
        report = await handle.result(timeout=600)
    """

    def __init__(
        self,
        store: Store,
        task_id: str,
        caller: str,
        returns: Any = None,
        authorize: Callable[[str, str, str], None] | None = None,
    ) -> None:
        self._store = store
        self._caller = caller
        self._returns = returns
        self._authorize = authorize
        #: The task's id: give it to another process to re-attach (``caller.task(id)``).
        self.id = task_id

    def __repr__(self) -> str:
        return f"<TaskHandle {self.id}>"

    async def status(self) -> TaskStatus:
        """The task's state now (a frozen snapshot); UnknownTask for an unknown id.

        Example::

            s = await handle.status(); print(s.state, s.attempt, s.progress)
        """
        return TaskStatus.of(await self._store.require(self.id))

    async def result(self, timeout: float | None = None) -> T:
        """Wait for the end of the task and return its result, decoded as ``returns``.

        Raises :class:`~agentcomm.errors.RemoteError` when the handler raised,
        :class:`~agentcomm.errors.ValidationError` when its payload was refused,
        :class:`~agentcomm.errors.TaskCancelled` when it was canceled,
        :class:`~agentcomm.errors.TaskLost` when its worker died and its policy said
        fail, :class:`~agentcomm.errors.RequestTimeout` after ``timeout`` seconds
        (the task goes on).

        Example::

            summary = await handle.result(timeout=300)
        """
        record = await self._store.require(self.id)
        if record.state not in TERMINAL:
            try:
                async with asyncio.timeout(timeout):
                    async with contextlib.aclosing(self._store.watch(self.id)) as records:
                        async for r in records:
                            if r.state in TERMINAL:
                                record = r
                                break
            except TimeoutError:
                raise RequestTimeout(record.agent, record.handler, timeout or 0.0) from None
        return self._outcome(record)

    def _outcome(self, r: TaskRecord) -> T:
        if r.state == "canceled":
            raise TaskCancelled(self.id, f"task {self.id} ({r.agent}.{r.handler}) was canceled")
        if r.state == "failed":
            err = r.error
            if err is not None and err.code == "lost":
                raise TaskLost(self.id, f"task {self.id} ({r.agent}.{r.handler}): {err.message}")
            from agentcomm.core.envelope import Envelope
            from agentcomm.core.responses import raise_remote

            failed = Envelope(id=self.id, kind="response", sender=r.agent, error=err)
            request = Envelope(
                id=self.id, kind="request", sender=r.caller, recipient=r.agent, handler=r.handler
            )
            raise_remote(failed, request, 0.0)
        raw = r.result
        if self._returns is None:
            value: T = msgspec.json.decode(raw)
            return value
        decoded: T = codec_for(self._returns).decode(raw)
        return decoded

    def updates(self, since: int = 0) -> AsyncIterator[TaskUpdate]:
        """Every update after cursor ``since`` (0: from the start), live, until the last.

        Each :class:`TaskUpdate` carries its ``cursor``: keep the last one you handled
        and pass it as ``since`` (here or in another process) to go on with nothing
        lost or repeated, within the retention.

        Example::

            async for u in handle.updates(since=saved_cursor):
                handle_update(u); saved_cursor = u.cursor
        """
        return self._store.follow(self.id, since)

    async def cancel(self, timeout: float = 10.0) -> TaskStatus:
        """Cancel the task; the running handler sees ``asyncio.CancelledError``.

        Refused with :class:`~agentcomm.errors.PermissionDenied` when the access
        policy does not let this agent send to the task's handler. Returns the
        status once the task is terminal (usually ``canceled``; a handler
        that finished first stays ``completed``), or after ``timeout`` seconds with
        ``cancel_requested`` set. Raises :class:`~agentcomm.errors.TaskFinished` when
        the task had already ended.

        Example::

            status = await handle.cancel()
            assert status.state in ("canceled", "completed")
        """

        def request(r: TaskRecord) -> TaskRecord | None:
            self._allowed(r)
            if r.state in TERMINAL:
                raise TaskFinished(
                    self.id, r.state, f"task {self.id} is already {r.state}: nothing to cancel"
                )
            if r.cancel_requested:
                return None
            return msgspec.structs.replace(r, cancel_requested=True)

        record = await self._store.mutate(self.id, request)
        if record.state == "submitted":  # no worker has it: cancel it here

            def still_submitted(r: TaskRecord) -> None:
                if r.state != "submitted":
                    raise TaskNotWaiting(self.id, r.state, "picked up meanwhile")

            try:
                record = await self._store.finish(self.id, "canceled", check=still_submitted)
            except TaskNotWaiting:
                pass  # a worker took it meanwhile: it sees the request
            except TaskFinished:
                pass
        return await self._until_terminal(timeout)

    def _allowed(self, r: TaskRecord) -> None:
        """Whoever may send to the task's handler may cancel and answer it (the access hook)."""
        if self._authorize is not None:
            self._authorize(self._caller, "send", f"{r.agent}.{r.handler}")

    async def _until_terminal(self, timeout: float) -> TaskStatus:
        last: TaskRecord | None = None
        try:
            async with asyncio.timeout(timeout):
                async with contextlib.aclosing(self._store.watch(self.id)) as records:
                    async for r in records:
                        last = r
                        if r.state in TERMINAL:
                            break
        except TimeoutError:
            pass
        return TaskStatus.of(last if last is not None else await self._store.require(self.id))

    async def answer(self, value: Any, timeout: float = 10.0) -> None:
        """Answer the question the task asked (``ctx.ask``); the handler resumes with it.

        Returns once the handler accepted the answer. Raises
        :class:`~agentcomm.errors.PermissionDenied` when the access policy does not
        let this agent send to the task's handler,
        :class:`~agentcomm.errors.ValidationError` when the value does not match the
        type the handler asked for (the task keeps waiting: answer again),
        :class:`~agentcomm.errors.TaskNotWaiting` when the task is not
        ``input-required``, :class:`~agentcomm.errors.TaskFinished` when it ended,
        :class:`~agentcomm.errors.RequestTimeout` when no worker checked the answer
        within ``timeout`` seconds.

        Example::

            status = await handle.status()
            if status.state == "input-required":
                await handle.answer(True)
        """
        raw = encode_payload(value)
        aid = uuid.uuid4().hex

        def put(r: TaskRecord) -> TaskRecord:
            self._allowed(r)
            if r.state in TERMINAL:
                raise TaskFinished(self.id, r.state, f"task {self.id} is {r.state}: too late")
            if r.state != "input-required" or r.question is None:
                raise TaskNotWaiting(
                    self.id,
                    r.state,
                    f"task {self.id} is {r.state}, not waiting for input: answer only after "
                    "its status (or an update) says input-required",
                )
            if r.answer is not None and r.answer.rejected is None:
                raise TaskNotWaiting(
                    self.id, r.state, f"task {self.id}: another answer is being checked"
                )
            answer = Answer(id=aid, question_id=r.question.id, value=raw, by=self._caller)
            return msgspec.structs.replace(r, answer=answer)

        record = await self._store.mutate(self.id, put)
        try:
            async with asyncio.timeout(timeout):
                async with contextlib.aclosing(self._store.watch(self.id)) as records:
                    async for r in records:
                        if r.answered == aid:
                            return
                        if r.answer is not None and r.answer.id == aid:
                            if r.answer.rejected is not None:
                                raise ValidationError(
                                    f"task {self.id} refused the answer: {r.answer.rejected}"
                                )
                            continue
                        raise TaskNotWaiting(
                            self.id, r.state, f"task {self.id} stopped waiting before it read it"
                        )
        except TimeoutError:
            raise RequestTimeout(record.agent, record.handler, timeout) from None
