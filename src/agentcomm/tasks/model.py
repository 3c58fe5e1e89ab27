"""Durable tasks' values: the states and their machine, the stored record, what callers see.

The state machine follows A2A's task states (``docs/streams-and-tasks.md`` draws it)::

    submitted -> working | canceled | failed
    working -> working (a re-run) | input-required | completed | failed | canceled
    input-required -> working | failed | canceled

``completed``, ``failed`` and ``canceled`` are terminal. :func:`check_transition`
refuses any other change with a typed error.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

import msgspec

from agentcomm.core.envelope import ErrorInfo
from agentcomm.core.errors import ConfigurationError, DecodeError
from agentcomm.core.progress import Progress
from agentcomm.core.task_errors import InvalidTransition, TaskFinished
from agentcomm.transports.streams import StreamConfig

__all__ = [
    "BUCKET",
    "BUCKET_HISTORY",
    "TERMINAL",
    "UPDATE_STREAM",
    "WORK_STREAM",
    "Answer",
    "Question",
    "TaskRecord",
    "TaskRetention",
    "TaskState",
    "TaskStatus",
    "TaskUpdate",
    "UpdateKind",
    "check_transition",
    "new_task_id",
    "update_subject",
    "task_streams",
    "work_subject",
]

#: A task's state (A2A's names).
TaskState = Literal["submitted", "working", "input-required", "completed", "failed", "canceled"]
#: The states a task never leaves.
TERMINAL: frozenset[str] = frozenset({"completed", "failed", "canceled"})

_ALLOWED: dict[str, frozenset[str]] = {
    "submitted": frozenset({"working", "canceled", "failed"}),
    "working": frozenset({"working", "input-required", "completed", "failed", "canceled"}),
    "input-required": frozenset({"working", "failed", "canceled"}),
}

#: The key/value bucket of task records, the stream of work, the stream of updates.
BUCKET = "tasks"
WORK_STREAM = "TASKS"
UPDATE_STREAM = "TASK_UPDATES"

#: What an update says: a state change, a progress report, a streamed chunk, the result.
UpdateKind = Literal["state", "progress", "artifact", "result"]


def work_subject(agent: str) -> str:
    """The subject of the work for ``agent``'s task handlers.

    Example::

        assert work_subject("writer") == "tasks.work.writer"
    """
    return f"tasks.work.{agent}"


def update_subject(task_id: str) -> str:
    """The subject of one task's updates.

    Example::

        assert update_subject("t1") == "tasks.updates.t1"
    """
    return f"tasks.updates.{task_id}"


def new_task_id() -> str:
    """A new task id: 32 hex digits (a valid key, subject token and file name).

    Example::

        assert len(new_task_id()) == 32
    """
    return uuid.uuid4().hex


def check_transition(task_id: str, state: str, new: str) -> None:
    """Raise :class:`~agentcomm.errors.InvalidTransition` unless ``state -> new`` is allowed.

    Example::

        check_transition("t1", "working", "completed")  # fine
    """
    if state in TERMINAL:
        raise TaskFinished(
            task_id, state, f"task {task_id} is already {state}; it cannot become {new}"
        )
    if new not in _ALLOWED.get(state, frozenset()):
        raise InvalidTransition(task_id, state, f"task {task_id} cannot go from {state} to {new}")


class TaskRetention(msgspec.Struct, frozen=True, kw_only=True):
    """How long and how much the task store keeps (every bound is required: nothing unbounded).

    ``max_age`` seconds: records (refreshed on every change) and updates older than
    that are dropped; ``max_tasks`` bounds the queued work messages, ``max_updates``
    and ``max_bytes`` the update log. ``lease`` is the worker's lease (the work
    consumer's ``ack_wait``): a worker renews it every ``lease / 3`` seconds, and a
    task whose worker died is noticed by another worker ``lease`` seconds later.

    Example::

        Runtime(task_retention=TaskRetention(max_age=3600, max_updates=50_000))
    """

    max_age: float = 7 * 24 * 3600.0
    max_tasks: int = 10_000
    max_updates: int = 100_000
    max_bytes: int = 64 << 20
    lease: float = 3.0

    def __post_init__(self) -> None:
        if not (self.max_age >= 1 and self.max_tasks >= 1 and self.max_updates >= 1):
            raise ConfigurationError(
                "TaskRetention: max_age must be >= 1 s, max_tasks and max_updates >= 1"
            )
        if not (self.max_bytes >= 1024 and 0.3 <= self.lease <= 600):
            raise ConfigurationError(
                "TaskRetention: max_bytes must be >= 1024 and lease between 0.3 and 600 s"
            )


#: Changes kept per task record in the bucket (the current one and the one before).
BUCKET_HISTORY = 2


def task_streams(retention: TaskRetention) -> list[StreamConfig]:
    """The two streams of the task store under ``retention``: the work, the updates.

    The task store creates them (:meth:`~agentcomm.tasks.store.Store.ensure`), and so
    does ``agentcomm nats setup`` for a broker where agents may not.

    Example::

        work, updates = task_streams(TaskRetention())
        assert work.name == "TASKS"
    """
    r = retention
    return [
        StreamConfig(
            name=WORK_STREAM,
            max_msgs=r.max_tasks,
            max_bytes=r.max_bytes,
            max_age=r.max_age,
            duplicate_window=120.0,
        ),
        StreamConfig(
            name=UPDATE_STREAM, max_msgs=r.max_updates, max_bytes=r.max_bytes, max_age=r.max_age
        ),
    ]


class Question(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What a task handler asked with ``ctx.ask``: the prompt and the answer's schema.

    ``prompt`` is the question as JSON, ``schema`` the JSON Schema a valid answer
    meets (informative: the handler validates), ``deadline`` when it stops waiting.

    Example::

        q = handle_status.question; print(q.id, q.text, q.schema)
    """

    id: str
    prompt: msgspec.Raw
    schema: dict[str, Any] = msgspec.field(default_factory=dict)
    asked: float = 0.0
    deadline: float | None = None

    @property
    def text(self) -> Any:
        """The prompt decoded as plain JSON (a string, usually).

        Example::

            print(status.question.text)
        """
        return msgspec.json.decode(self.prompt)


class Answer(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """An answer written by ``handle.answer``, for the worker to validate.

    ``rejected`` is set by the worker when the value fails the handler's type.
    """

    id: str
    question_id: str
    value: msgspec.Raw
    by: str
    rejected: str | None = None


class TaskRecord(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One task as stored in the ``tasks`` bucket (changed with compare-and-set only).

    ``cursor`` is the sequence of the last update appended before this version,
    ``closed`` says the terminal update is in the log, ``answered`` the id of the
    last answer the handler accepted, ``released`` that the last worker gave the
    task back on shutdown (its re-run is not a lost worker's).
    """

    id: str
    agent: str
    handler: str
    caller: str
    state: TaskState = "submitted"
    attempt: int = 0
    progress: Progress | None = None
    question: Question | None = None
    answer: Answer | None = None
    answered: str | None = None
    result: msgspec.Raw = msgspec.field(default_factory=lambda: msgspec.Raw(b"null"))
    error: ErrorInfo | None = None
    cancel_requested: bool = False
    released: bool = False
    created: float = 0.0
    updated: float = 0.0
    cursor: int = 0
    closed: bool = False


class TaskStatus(msgspec.Struct, frozen=True, kw_only=True):
    """A frozen snapshot of a task: ``await handle.status()``.

    Example::

        s = await handle.status()
        print(s.state, s.attempt, s.progress and s.progress.fraction)
    """

    id: str
    agent: str
    handler: str
    caller: str
    state: TaskState
    attempt: int
    progress: Progress | None
    question: Question | None
    error: ErrorInfo | None
    cancel_requested: bool
    created: float
    updated: float
    #: The sequence of the latest update: ``handle.updates(since=cursor)`` goes on from it.
    cursor: int

    @property
    def done(self) -> bool:
        """True once the task is completed, failed or canceled.

        Example::

            while not (await handle.status()).done: ...
        """
        return self.state in TERMINAL

    @classmethod
    def of(cls, r: TaskRecord) -> TaskStatus:
        """The status a record shows."""
        return cls(
            id=r.id,
            agent=r.agent,
            handler=r.handler,
            caller=r.caller,
            state=r.state,
            attempt=r.attempt,
            progress=r.progress,
            question=r.question,
            error=r.error,
            cancel_requested=r.cancel_requested,
            created=r.created,
            updated=r.updated,
            cursor=r.cursor,
        )


class UpdateBody(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """The payload of one stored update (what :class:`TaskUpdate` is read from)."""

    kind: UpdateKind
    state: TaskState
    attempt: int
    progress: Progress | None = None
    question: Question | None = None
    data: msgspec.Raw = msgspec.field(default_factory=lambda: msgspec.Raw(b"null"))
    error: ErrorInfo | None = None


class TaskUpdate(msgspec.Struct, frozen=True, kw_only=True):
    """One update of a task, as ``handle.updates()`` yields it.

    ``cursor`` is its place in the update log: pass the last one you handled to
    ``updates(since=cursor)`` (in this process or another) to go on with nothing
    lost or repeated. ``kind`` is ``"state"`` (a state change: ``state`` is the new
    one, ``question`` set for ``input-required``, ``error`` for ``failed``),
    ``"progress"``, ``"artifact"`` (a chunk an async generator handler yielded, in
    ``data``) or ``"result"`` (``data`` is the result; the task completed).

    Example::

        async for u in handle.updates():
            if u.kind == "artifact":
                print(u.data)
            last = u.cursor
    """

    cursor: int
    kind: UpdateKind
    state: TaskState
    attempt: int
    time: float
    progress: Progress | None = None
    question: Question | None = None
    data: Any = None
    error: ErrorInfo | None = None

    @property
    def final(self) -> bool:
        """True for the task's last update (its state is terminal).

        Example::

            if u.final: break
        """
        return self.state in TERMINAL


_encode = msgspec.json.Encoder().encode
_record_decoder = msgspec.json.Decoder(TaskRecord)
_body_decoder = msgspec.json.Decoder(UpdateBody)


def encode_record(r: TaskRecord) -> bytes:
    """The stored bytes of a record."""
    return _encode(r)


def decode_record(raw: bytes) -> TaskRecord:
    """A record from its stored bytes; :class:`~agentcomm.errors.DecodeError` if it is not one."""
    try:
        return _record_decoder.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise DecodeError(f"a stored task record does not decode: {exc}") from None


def encode_body(b: UpdateBody) -> bytes:
    """The payload of an update envelope."""
    return _encode(b)


def decode_update(raw: bytes, cursor: int, when: float) -> TaskUpdate:
    """The :class:`TaskUpdate` an update envelope's payload holds."""
    b = _body_decoder.decode(raw)
    return TaskUpdate(
        cursor=cursor,
        kind=b.kind,
        state=b.state,
        attempt=b.attempt,
        time=when,
        progress=b.progress,
        question=b.question,
        data=msgspec.json.decode(b.data),
        error=b.error,
    )


def now() -> float:
    """The wall clock used for records' times."""
    return time.time()
