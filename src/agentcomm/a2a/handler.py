"""The A2A request handler of an exposed agent: A2A operations -> agentcomm calls.

The SDK parses and answers the protocol (JSON-RPC in spec 1.0 and 0.3, HTTP+JSON);
this handler does the work, on agentcomm's own APIs, so a call runs exactly as a
local one does (same workers, validation, deadlines, access policy):

* ``SendMessage`` to a ``request`` skill is ``caller.request()`` (the answer is a
  message); to a ``stream`` skill its chunks joined; to a ``task`` skill
  ``caller.start_task()``, then (unless ``returnImmediately``) its updates until it
  ends or asks; with a ``taskId`` the message answers the task's ``ctx.ask``;
* ``SendStreamingMessage``: the task's updates (or the stream's chunks) as events;
* ``GetTask``/``ListTasks``/``CancelTask``/``SubscribeToTask``: ``status()``,
  ``rt.tasks.list()``, ``cancel()`` and ``updates(since=cursor)``. A subscriber
  first gets the task as it is now (every artifact so far), then every update
  after it: nothing in between is lost. ``Last-Event-ID`` (or the
  ``A2A-Last-Cursor`` header) set to an update's ``metadata["agentcomm.cursor"]``
  resumes right after it instead.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING, Any

from a2a.server.request_handlers.request_handler import RequestHandler
from a2a.types import a2a_pb2 as pb
from a2a.utils import errors as a2a_errors
from google.protobuf import json_format

from agentcomm.a2a import convert
from agentcomm.a2a.errors import to_a2a
from agentcomm.a2a.runs import Conversations, Streams, artifacts_until, follow, interrupted
from agentcomm.a2a.skills import Skill
from agentcomm.core.errors import AgentCommError, ValidationError
from agentcomm.core.task_errors import UnknownTask
from agentcomm.tasks.model import TERMINAL
from agentcomm.tasks.service import Tasks

if TYPE_CHECKING:
    from a2a.server.context import ServerCallContext

    from agentcomm.a2a.exposed import Exposed
    from agentcomm.tasks.handle import TaskHandle
    from agentcomm.tasks.model import TaskStatus

__all__ = ["AgentRequestHandler"]

Event = pb.Task | pb.Message | pb.TaskStatusUpdateEvent | pb.TaskArtifactUpdateEvent


def _meta(msg: pb.Message, params: pb.SendMessageRequest) -> dict[str, Any]:
    out: dict[str, Any] = json_format.MessageToDict(params.metadata)
    out.update(json_format.MessageToDict(msg.metadata))
    return out


class AgentRequestHandler(RequestHandler):
    """Serves one agent's skills over A2A for an :class:`~agentcomm.a2a.server.A2AExposure`."""

    def __init__(self, exposure: Exposed) -> None:
        self._x = exposure
        self._conv = Conversations(10_000)
        self._streams = Streams(1_000)

    # -- helpers ------------------------------------------------------------------------
    def _skill(self, msg: pb.Message, params: pb.SendMessageRequest) -> Skill:
        name = _meta(msg, params).get("skill") or self._x.default_skill
        skills = self._x.skills
        if not name:
            raise a2a_errors.InvalidParamsError(
                f"say which skill in metadata.skill: one of {sorted(skills)}"
            )
        skill = skills.get(str(name))
        if skill is None:
            raise a2a_errors.InvalidParamsError(
                f"agent {self._x.agent_name!r} has no skill {name!r}: one of {sorted(skills)}"
            )
        return skill

    def _payload(self, msg: pb.Message, skill: Skill) -> Any:
        payload = convert.payload_of(msg, skill)
        self._x.check_payload(skill, payload)
        return payload

    async def _handle(self, task_id: str, context: ServerCallContext) -> tuple[Any, TaskStatus]:
        caller = self._x.caller(context)
        handle = caller.task(task_id)
        status = await handle.status()
        if status.agent != self._x.agent_name:  # another agent's task: not ours to show
            raise UnknownTask(task_id)
        return handle, status

    async def _task(
        self, handle: TaskHandle[Any], status: TaskStatus, length: int | None = None
    ) -> pb.Task:
        artifacts = await artifacts_until(handle, status)
        task = convert.task_of(
            status,
            context_id=self._conv.context(status.id),
            artifacts=artifacts,
            history=self._conv.history(status.id, length),
        )
        if status.state == "input-required" or status.state in TERMINAL:
            if task.status.HasField("message"):
                self._conv.add(status.id, task.status.message)
                if length is None:
                    task.ClearField("history")
                    task.history.extend(self._conv.history(status.id, None))
        return task

    # -- SendMessage ----------------------------------------------------------------------
    async def on_message_send(
        self, params: pb.SendMessageRequest, context: ServerCallContext
    ) -> pb.Task | pb.Message:
        with self._x.traced(context, "send"):
            try:
                return await self._send(params, context)
            except AgentCommError as exc:
                raise to_a2a(exc) from exc

    async def _send(
        self, params: pb.SendMessageRequest, context: ServerCallContext
    ) -> pb.Task | pb.Message:
        msg = params.message
        if msg.task_id:
            return await self._continue(params, context, blocking=True)
        skill = self._skill(msg, params)
        payload = self._payload(msg, skill)
        caller = self._x.caller(context)
        ctx_id = msg.context_id or convert.new_id()
        if skill.kind == "request":
            result = await caller.request(
                self._x.agent_name, skill.id, payload, timeout=self._x.timeout
            )
            return convert.agent_message(convert.parts_of(result), context_id=ctx_id)
        if skill.kind == "stream":
            parts: list[pb.Part] = []
            async with await caller.stream(
                self._x.agent_name, skill.id, payload, timeout=self._x.timeout
            ) as s:
                async for chunk in s:
                    parts.extend(convert.parts_of(chunk))
            return convert.agent_message(parts, context_id=ctx_id)
        handle = await caller.start_task(self._x.agent_name, skill.id, payload)
        self._conv.start(handle.id, ctx_id, _stamped(msg, handle.id, ctx_id))
        status = await handle.status()
        if not params.configuration.return_immediately:
            await self._wait(follow(handle, status.cursor))
            status = await handle.status()
        return await self._task(handle, status)

    async def _wait(self, updates: Any) -> None:
        """Drain ``updates`` (to the end or a question), for at most ``send_wait`` seconds."""
        try:
            async with asyncio.timeout(self._x.send_wait):
                async for _ in updates:
                    pass
        except TimeoutError:
            pass
        finally:
            await updates.aclose()

    async def _continue(
        self, params: pb.SendMessageRequest, context: ServerCallContext, *, blocking: bool
    ) -> pb.Task:
        msg = params.message
        handle, status = await self._handle(msg.task_id, context)
        if status.state in TERMINAL:
            raise a2a_errors.UnsupportedOperationError(
                f"task {status.id} is {status.state}: a finished task takes no more messages; "
                "start a new one (same contextId)"
            )
        if status.state != "input-required":
            status = await self._until_asked(handle, status)
        self._conv.add(status.id, _stamped(msg, status.id, self._conv.context(status.id)))
        await handle.answer(convert.answer_of(msg, status.question), timeout=self._x.timeout)
        asked = status.question.id if status.question is not None else None
        if blocking and not params.configuration.return_immediately:
            await self._wait(follow(handle, status.cursor, answered=asked))
        task = await self._task(handle, await handle.status())
        task.metadata.update({"agentcomm.answered": asked or "", convert.CURSOR: status.cursor})
        return task

    async def _until_asked(self, handle: TaskHandle[Any], status: TaskStatus) -> TaskStatus:
        """A message to a working task answers its next question: wait for it (bounded)."""
        try:
            async with asyncio.timeout(self._x.timeout or 30.0):
                async for u in follow(handle, status.cursor, after=status.updated):
                    if u.state == "input-required":
                        break
        except TimeoutError:
            pass
        status = await handle.status()
        if status.state != "input-required":
            raise a2a_errors.UnsupportedOperationError(
                f"task {status.id} is {status.state} and asked nothing to answer: "
                "send when it is input-required"
            )
        return status

    # -- SendStreamingMessage -------------------------------------------------------------
    async def on_message_send_stream(
        self, params: pb.SendMessageRequest, context: ServerCallContext
    ) -> AsyncGenerator[Event]:
        with self._x.traced(context, "stream"):
            try:
                async for ev in self._stream(params, context):
                    yield ev
            except AgentCommError as exc:
                raise to_a2a(exc) from exc

    async def _stream(
        self, params: pb.SendMessageRequest, context: ServerCallContext
    ) -> AsyncGenerator[Event]:
        msg = params.message
        if msg.task_id:
            handle, status = await self._handle(msg.task_id, context)
            task = await self._continue(params, context, blocking=False)
            yield task
            asked = json_format.MessageToDict(task.metadata).get("agentcomm.answered") or None
            async for ev in self._events(handle, status.id, _cursor(task), answered=asked):
                yield ev
            return
        skill = self._skill(msg, params)
        payload = self._payload(msg, skill)
        caller = self._x.caller(context)
        ctx_id = msg.context_id or convert.new_id()
        if skill.kind == "request":
            result = await caller.request(
                self._x.agent_name, skill.id, payload, timeout=self._x.timeout
            )
            yield convert.agent_message(convert.parts_of(result), context_id=ctx_id)
            return
        if skill.kind == "stream":
            async for ev in self._run_stream(caller, skill, payload, ctx_id):
                yield ev
            return
        handle = await caller.start_task(self._x.agent_name, skill.id, payload)
        self._conv.start(handle.id, ctx_id, _stamped(msg, handle.id, ctx_id))
        status = await handle.status()
        yield await self._task(handle, status)
        async for ev in self._events(handle, handle.id, status.cursor):
            yield ev

    async def _events(
        self,
        handle: TaskHandle[Any],
        task_id: str,
        since: int,
        *,
        answered: str | None = None,
        after: float | None = None,
    ) -> AsyncGenerator[Event]:
        ctx_id = self._conv.context(task_id)
        first = True
        async for u in follow(handle, since, answered=answered, after=after):
            if u.kind in ("artifact", "result"):
                yield convert.artifact_event(u, task_id, ctx_id, first=first)
                first = False
                if u.kind == "artifact":
                    continue
            ev = convert.status_event(u, task_id, ctx_id)
            if ev.status.HasField("message") and interrupted(u.state):
                self._conv.add(task_id, ev.status.message)
            yield ev

    async def _run_stream(
        self, caller: Any, skill: Skill, payload: Any, ctx_id: str
    ) -> AsyncGenerator[Event]:
        task = pb.Task(id=convert.new_id(), context_id=ctx_id)
        task.status.state = pb.TASK_STATE_WORKING
        task.metadata.update({"agentcomm.skill": skill.id})
        stop = self._streams.begin(task)
        yield task
        chunks = pb.Artifact(artifact_id=f"{task.id}-chunks", name="chunks")
        state = pb.TASK_STATE_COMPLETED
        note: pb.Message | None = None
        try:
            async with await caller.stream(
                self._x.agent_name, skill.id, payload, timeout=self._x.timeout
            ) as s:
                seen = None
                async for chunk in s:
                    if s.progress is not None and s.progress != seen:
                        seen = s.progress
                        yield _progress_event(task, seen)
                    parts = convert.parts_of(chunk)
                    chunks.parts.extend(parts)
                    ev = pb.TaskArtifactUpdateEvent(
                        task_id=task.id, context_id=ctx_id, append=len(chunks.parts) > len(parts)
                    )
                    ev.artifact.CopyFrom(
                        pb.Artifact(artifact_id=chunks.artifact_id, name="chunks", parts=parts)
                    )
                    yield ev
                    if stop.is_set():
                        state = pb.TASK_STATE_CANCELED
                        break
        except AgentCommError as exc:
            state = pb.TASK_STATE_FAILED
            note = convert.agent_message(
                [pb.Part(text=f"{type(exc).__name__}: {exc}")], context_id=ctx_id, task_id=task.id
            )
        finally:
            final = pb.Task(id=task.id, context_id=ctx_id)
            final.status.state = state
            if note is not None:
                final.status.message.CopyFrom(note)
            if chunks.parts:
                final.artifacts.append(chunks)
            self._streams.end(final)
        ev = pb.TaskStatusUpdateEvent(task_id=task.id, context_id=ctx_id)
        ev.status.CopyFrom(final.status)
        yield ev

    # -- tasks ---------------------------------------------------------------------------
    async def on_get_task(
        self, params: pb.GetTaskRequest, context: ServerCallContext
    ) -> pb.Task | None:
        snap = self._streams.snapshot(params.id)
        if snap is not None:
            return snap
        length = params.history_length if params.HasField("history_length") else None
        try:
            handle, status = await self._handle(params.id, context)
            return await self._task(handle, status, length)
        except AgentCommError as exc:
            raise to_a2a(exc) from exc

    async def on_list_tasks(
        self, params: pb.ListTasksRequest, context: ServerCallContext
    ) -> pb.ListTasksResponse:
        _check_list(params, context)
        caller = self._x.caller(context)
        states = {v: k for k, v in convert.STATES.items()}
        want = states.get(params.status) if params.status else None
        if params.status and want is None:
            return pb.ListTasksResponse(page_size=0, total_size=0)
        everything = await Tasks.of(self._x.runtime).list(want)  # type: ignore[arg-type]
        statuses = [s for s in everything if s.agent == self._x.agent_name]
        if params.context_id:
            statuses = [s for s in statuses if self._conv.context(s.id) == params.context_id]
        if params.HasField("status_timestamp_after"):
            after = params.status_timestamp_after.ToNanoseconds() / 1e9
            statuses = [s for s in statuses if s.updated >= after]
        size = params.page_size if params.HasField("page_size") else 50
        start = int(params.page_token or 0)
        page = statuses[start : start + size]
        length = params.history_length if params.HasField("history_length") else None
        tasks = []
        for s in page:
            arts = await artifacts_until(caller.task(s.id), s) if params.include_artifacts else None
            ctx_id = self._conv.context(s.id)
            history = self._conv.history(s.id, length)
            tasks.append(convert.task_of(s, context_id=ctx_id, artifacts=arts, history=history))
        nxt = str(start + size) if start + size < len(statuses) else ""
        return pb.ListTasksResponse(
            tasks=tasks, next_page_token=nxt, page_size=len(page), total_size=len(statuses)
        )

    async def on_cancel_task(
        self, params: pb.CancelTaskRequest, context: ServerCallContext
    ) -> pb.Task | None:
        stop = self._streams.running.get(params.id)
        if stop is not None:
            stop.set()
            snap = self._streams.snapshot(params.id)
            task = pb.Task()
            if snap is not None:
                task.CopyFrom(snap)
            task.status.state = pb.TASK_STATE_CANCELED
            return task
        if self._streams.snapshot(params.id) is not None:
            raise a2a_errors.TaskNotCancelableError(f"stream run {params.id} has ended")
        try:
            with self._x.traced(context, "cancel"):
                handle, status = await self._handle(params.id, context)
                if status.state in TERMINAL:
                    raise a2a_errors.TaskNotCancelableError(
                        f"task {status.id} is already {status.state}", data={"state": status.state}
                    )
                status = await handle.cancel(timeout=self._x.timeout)
                return await self._task(handle, status)
        except AgentCommError as exc:
            raise to_a2a(exc, cancel=True) from exc

    async def on_subscribe_to_task(
        self, params: pb.SubscribeToTaskRequest, context: ServerCallContext
    ) -> AsyncGenerator[Event]:
        try:
            handle, status = await self._handle(params.id, context)
            since = _resume_cursor(context)
        except AgentCommError as exc:
            raise to_a2a(exc) from exc
        after: float | None = None
        if since is None:
            if status.state in TERMINAL:
                raise a2a_errors.UnsupportedOperationError(
                    f"task {status.id} is {status.state}: nothing to subscribe to"
                )
            yield await self._task(handle, status)
            since = status.cursor
            after = status.updated if status.state != "input-required" else None
        shown = status.question.id if since == status.cursor and status.question else None
        with contextlib.suppress(UnknownTask):
            async for ev in self._events(handle, status.id, since, answered=shown, after=after):
                yield ev

    # -- push notifications and the extended card: not offered (the card says so) -----------
    async def on_create_task_push_notification_config(
        self, params: Any, context: ServerCallContext
    ) -> Any:
        raise a2a_errors.PushNotificationNotSupportedError()

    async def on_get_task_push_notification_config(
        self, params: Any, context: ServerCallContext
    ) -> Any:
        raise a2a_errors.PushNotificationNotSupportedError()

    async def on_list_task_push_notification_configs(
        self, params: Any, context: ServerCallContext
    ) -> Any:
        raise a2a_errors.PushNotificationNotSupportedError()

    async def on_delete_task_push_notification_config(
        self, params: Any, context: ServerCallContext
    ) -> None:
        raise a2a_errors.PushNotificationNotSupportedError()

    async def on_get_extended_agent_card(
        self, params: Any, context: ServerCallContext
    ) -> pb.AgentCard:
        raise a2a_errors.ExtendedAgentCardNotConfiguredError()


def _stamped(msg: pb.Message, task_id: str, ctx_id: str) -> pb.Message:
    out = pb.Message()
    out.CopyFrom(msg)
    out.task_id = task_id
    out.context_id = ctx_id
    return out


def _cursor(task: pb.Task) -> int:
    value = json_format.MessageToDict(task.metadata).get(convert.CURSOR, 0)
    return int(value) if isinstance(value, int | float) else 0


def _progress_event(task: pb.Task, progress: Any) -> pb.TaskStatusUpdateEvent:
    ev = pb.TaskStatusUpdateEvent(task_id=task.id, context_id=task.context_id)
    text = f"{progress.done:g}/{progress.total:g}" if progress.total else f"{progress.done:g}"
    if progress.message:
        text += f" {progress.message}"
    ev.status.state = pb.TASK_STATE_WORKING
    meta = {"agentcomm.progress": {"done": progress.done, "total": progress.total}}
    ev.status.message.CopyFrom(
        convert.agent_message(
            [pb.Part(text=text)], context_id=task.context_id, task_id=task.id, metadata=meta
        )
    )
    return ev


def _check_list(params: pb.ListTasksRequest, context: ServerCallContext) -> None:
    raw = context.state.get("params") or {}
    status = raw.get("status")
    names = {pb.TaskState.Name(v) for v in convert.STATES.values()}
    if status not in (None, "", "TASK_STATE_UNSPECIFIED") and status not in names:
        raise a2a_errors.InvalidParamsError(
            f"unknown task state {status!r}: one of {sorted(names)}"
        )
    if params.HasField("page_size") and not 1 <= params.page_size <= 100:
        raise a2a_errors.InvalidParamsError(f"pageSize must be 1 to 100, got {params.page_size}")
    if params.HasField("history_length") and params.history_length < 0:
        raise a2a_errors.InvalidParamsError("historyLength must be >= 0")
    if params.page_token and not params.page_token.isdigit():
        raise a2a_errors.InvalidParamsError(f"pageToken {params.page_token!r} is not one we gave")


def _resume_cursor(context: ServerCallContext) -> int | None:
    headers = context.state.get("headers") or {}
    raw = headers.get("a2a-last-cursor") or headers.get("last-event-id")
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise ValidationError(f"the resume cursor {raw!r} is not an integer") from None
    return max(value, 0)
