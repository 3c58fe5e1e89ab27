"""agentcomm values <-> A2A protocol objects (the SDK's 1.0 protos), internal.

A payload is read from a message's parts (a data part is the payload; text fills
the skill's one argument, or holds a JSON object); a result becomes a text part
(a string) or a data part (anything else). A durable task's status becomes an A2A
``Task`` and each :class:`~agentcomm.tasks.model.TaskUpdate` a status or artifact
update event, carrying its cursor in ``metadata["agentcomm.cursor"]``.
"""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING, Any

from a2a.types import a2a_pb2 as pb
from google.protobuf import json_format, struct_pb2

from agentcomm.a2a.skills import Skill, payload_from_text
from agentcomm.core.errors import ValidationError

if TYPE_CHECKING:
    from agentcomm.core.envelope import ErrorInfo
    from agentcomm.core.progress import Progress
    from agentcomm.tasks.model import Question, TaskStatus, TaskUpdate

__all__ = [
    "CURSOR",
    "STATES",
    "agent_message",
    "answer_of",
    "artifact_event",
    "new_id",
    "parts_of",
    "payload_of",
    "status_event",
    "task_of",
    "text_of",
    "value_of",
]

#: The metadata key of an update's place in the task's update log.
CURSOR = "agentcomm.cursor"

#: agentcomm's task states -> A2A's.
STATES: dict[str, int] = {
    "submitted": pb.TASK_STATE_SUBMITTED,
    "working": pb.TASK_STATE_WORKING,
    "input-required": pb.TASK_STATE_INPUT_REQUIRED,
    "completed": pb.TASK_STATE_COMPLETED,
    "failed": pb.TASK_STATE_FAILED,
    "canceled": pb.TASK_STATE_CANCELED,
}


def new_id() -> str:
    """A fresh id for a message, a context or an artifact."""
    return uuid.uuid4().hex


def _value(obj: Any) -> struct_pb2.Value:
    v = struct_pb2.Value()
    json_format.ParseDict(obj, v)
    return v


def value_of(part: pb.Part) -> Any:
    """The JSON value of a data part.

    Example::

        value_of(pb.Part(data=...))
    """
    return _ints(json_format.MessageToDict(part.data))


def _ints(v: Any) -> Any:
    """JSON numbers travel as doubles in a protobuf Value: give integral ones back as ints."""
    if isinstance(v, float) and v.is_integer() and abs(v) < 2**53:
        return int(v)
    if isinstance(v, dict):
        return {k: _ints(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_ints(x) for x in v]
    return v


def text_of(parts: Any) -> str:
    """The text parts of a message, joined by newlines."""
    return "\n".join(p.text for p in parts if p.WhichOneof("content") == "text")


def _data_parts(parts: Any) -> list[Any]:
    return [value_of(p) for p in parts if p.WhichOneof("content") == "data"]


def _check_content(parts: Any) -> None:
    if not parts:
        raise ValidationError("the message has no parts")
    if not any(p.WhichOneof("content") in ("text", "data") for p in parts):
        raise ValidationError("this agent takes text and data parts; the message has neither")


def _files(parts: Any) -> list[dict[str, Any]]:
    out = []
    for p in parts:
        kind = p.WhichOneof("content")
        if kind in ("raw", "url"):
            out.append(json_format.MessageToDict(p))
    return out


def payload_of(message: pb.Message, skill: Skill) -> Any:
    """The payload a message carries for ``skill`` (ValidationError when there is none).

    One data part holding an object is the payload; text fills the skill's text
    argument (with a data part too: both); file parts (raw bytes, URLs) go to a
    ``files`` argument when the skill has one, else are ignored beside text or data.

    Example::

        payload = payload_of(request.message, skill)
    """
    _check_content(message.parts)
    data = _data_parts(message.parts)
    text = text_of(message.parts)
    props = skill.input_schema.get("properties") or {}
    if data:
        if len(data) != 1 or not isinstance(data[0], dict):
            raise ValidationError(f"skill {skill.id!r} takes one data part holding a JSON object")
        payload: dict[str, Any] = dict(data[0])
        field = next((k for k in ("text", skill.text_field) if k and k in props), None)
        if text and field and field not in payload:
            payload[field] = text
    else:
        payload = payload_from_text(skill, text)
    files = _files(message.parts)
    if files and "files" in props and isinstance(payload, dict):
        payload["files"] = files
    return payload


def answer_of(message: pb.Message, question: Question | None) -> Any:
    """The answer a message gives to a task's question (``ctx.ask``).

    A data part is the answer; text is the answer when the question wants a string,
    else it is read as JSON (``true``, ``42``...), else kept as text.

    Example::

        await handle.answer(answer_of(request.message, status.question))
    """
    _check_content(message.parts)
    data = _data_parts(message.parts)
    if data:
        return data[0]
    text = text_of(message.parts)
    schema = question.schema if question is not None else {}
    if schema.get("type") == "string":
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text


def parts_of(value: Any) -> list[pb.Part]:
    """A result or chunk as parts: a string as text, anything else as data.

    Example::

        parts_of("hello")    # [Part(text="hello")]
    """
    if isinstance(value, str):
        return [pb.Part(text=value)]
    return [pb.Part(data=_value(value), media_type="application/json")]


def agent_message(
    parts: list[pb.Part],
    *,
    context_id: str = "",
    task_id: str = "",
    metadata: dict[str, Any] | None = None,
) -> pb.Message:
    """A message from the agent."""
    msg = pb.Message(
        message_id=new_id(),
        role=pb.ROLE_AGENT,
        parts=parts,
        context_id=context_id,
        task_id=task_id,
    )
    if metadata:
        msg.metadata.update(metadata)
    return msg


def _progress_text(p: Progress) -> str:
    head = f"{p.done:g}/{p.total:g}" if p.total else f"{p.done:g}"
    return f"{head} {p.message}" if p.message else head


def _question_message(q: Question, context_id: str, task_id: str) -> pb.Message:
    text = q.text if isinstance(q.text, str) else json.dumps(q.text)
    meta: dict[str, Any] = {"agentcomm.question": q.id}
    if q.schema:
        meta["agentcomm.schema"] = q.schema
    return agent_message(
        [pb.Part(text=text)], context_id=context_id, task_id=task_id, metadata=meta
    )


def _error_message(e: ErrorInfo, context_id: str, task_id: str) -> pb.Message:
    meta = {"agentcomm.error": e.code, "agentcomm.type": e.type}
    return agent_message(
        [pb.Part(text=f"{e.type}: {e.message}")],
        context_id=context_id,
        task_id=task_id,
        metadata=meta,
    )


def _status(
    state: str,
    *,
    progress: Progress | None,
    question: Question | None,
    error: ErrorInfo | None,
    context_id: str,
    task_id: str,
    when: float,
) -> pb.TaskStatus:
    status = pb.TaskStatus(state=STATES[state])  # type: ignore[arg-type]
    status.timestamp.FromNanoseconds(int(when * 1e9))
    if state == "input-required" and question is not None:
        status.message.CopyFrom(_question_message(question, context_id, task_id))
    elif state == "failed" and error is not None:
        status.message.CopyFrom(_error_message(error, context_id, task_id))
    elif progress is not None and state == "working":
        meta = {"agentcomm.progress": {"done": progress.done, "total": progress.total}}
        status.message.CopyFrom(
            agent_message(
                [pb.Part(text=_progress_text(progress))],
                context_id=context_id,
                task_id=task_id,
                metadata=meta,
            )
        )
    return status


def task_of(
    s: TaskStatus,
    *,
    context_id: str,
    artifacts: list[pb.Artifact] | None = None,
    history: list[pb.Message] | None = None,
) -> pb.Task:
    """The A2A task a durable task's status shows.

    Example::

        task = task_of(await handle.status(), context_id=ctx_id)
    """
    task = pb.Task(id=s.id, context_id=context_id)
    task.status.CopyFrom(
        _status(
            s.state,
            progress=s.progress,
            question=s.question,
            error=s.error,
            context_id=context_id,
            task_id=s.id,
            when=s.updated,
        )
    )
    if artifacts:
        task.artifacts.extend(artifacts)
    if history:
        task.history.extend(history)
    task.metadata.update({CURSOR: s.cursor, "agentcomm.skill": s.handler})
    return task


def status_event(u: TaskUpdate, task_id: str, context_id: str) -> pb.TaskStatusUpdateEvent:
    """The status update event of a state or progress update."""
    ev = pb.TaskStatusUpdateEvent(task_id=task_id, context_id=context_id)
    ev.status.CopyFrom(
        _status(
            u.state,
            progress=u.progress,
            question=u.question,
            error=u.error,
            context_id=context_id,
            task_id=task_id,
            when=u.time,
        )
    )
    ev.metadata.update({CURSOR: u.cursor})
    return ev


def artifact_event(
    u: TaskUpdate, task_id: str, context_id: str, *, first: bool
) -> pb.TaskArtifactUpdateEvent:
    """The artifact update event of an artifact (a chunk) or the result.

    Chunks extend one artifact (``append`` after the first); the result is its own.
    """
    result = u.kind == "result"
    artifact = pb.Artifact(
        artifact_id=f"{task_id}-{'result' if result else 'chunks'}",
        name="result" if result else "chunks",
        parts=parts_of(u.data),
    )
    ev = pb.TaskArtifactUpdateEvent(
        task_id=task_id,
        context_id=context_id,
        artifact=artifact,
        append=not (first or result),
        last_chunk=result,
    )
    ev.metadata.update({CURSOR: u.cursor})
    return ev
