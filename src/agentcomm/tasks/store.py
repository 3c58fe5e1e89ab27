"""Where durable tasks live: records in a key/value bucket, work and updates in two streams.

Only the transport contracts are used (``KVStore``, ``EventLog``), so tasks run on
every engine: in memory they last as long as the transport object; on NATS they
are JetStream (a ``KV_<ns>_tasks`` bucket, the ``<ns>_TASKS`` and
``<ns>_TASK_UPDATES`` streams) and outlive every process.

* A record (:class:`~.model.TaskRecord`) changes only by compare-and-set
  (:meth:`Store.mutate`), so the caller, the worker, an answerer and a canceller
  never overwrite each other. Every write refreshes its TTL (``max_age``).
* Work (one message per task, subject ``tasks.work.<agent>``) goes to the agent's
  durable consumer group; the update log (``tasks.updates.<task_id>``) holds state
  changes, progress, artifacts and the result, and its sequence is the cursor.
* A terminal state is written in three steps: the record (the decision: a lost
  compare-and-set means someone else decided), the terminal update, then the
  record again with ``closed`` and the update's cursor.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

import msgspec

from agentcomm.core.envelope import Envelope, ErrorInfo, new_id
from agentcomm.core.errors import (
    DecodeError,
    KeyExists,
    RevisionConflict,
    TransportClosed,
    TransportError,
)
from agentcomm.core.task_errors import UnknownTask
from agentcomm.tasks.model import (
    BUCKET,
    BUCKET_HISTORY,
    TERMINAL,
    UPDATE_STREAM,
    WORK_STREAM,
    TaskRecord,
    TaskRetention,
    TaskState,
    TaskUpdate,
    UpdateBody,
    UpdateKind,
    check_transition,
    decode_record,
    decode_update,
    encode_body,
    encode_record,
    now,
    task_streams,
    update_subject,
)
from agentcomm.transports.streams import ConsumerConfig

if TYPE_CHECKING:
    from agentcomm.core.progress import Progress
    from agentcomm.tasks.model import Question
    from agentcomm.transports.base import KVStore, Transport

__all__ = ["Store"]

logger = logging.getLogger("agentcomm")

T = TypeVar("T")
_NULL = msgspec.Raw(b"null")
#: How long a store operation is retried while the engine fails (a broker restart).
RETRY_FOR = 30.0
#: Seconds a reader waits on the update log before it checks the record again.
POLL = 1.0
#: A terminal record not closed after this long: its writer died between the steps.
UNCLOSED_GRACE = 5.0


class Store:
    """The task store of one runtime (see the module docstring).

    Example::

        store = Store(rt.transport, TaskRetention())
        await store.ensure()
        record = await store.require("0f3c...")
    """

    def __init__(
        self, transport: Transport, retention: TaskRetention, *, manage: bool = True
    ) -> None:
        self.transport = transport
        self.retention = retention
        #: False for a reader (the CLI): the streams must exist, their limits are kept.
        self.manage = manage
        self._ready = False
        self._lock = asyncio.Lock()

    async def ensure(self) -> None:
        """Create (or update the limits of) the bucket and both streams; once."""
        if self._ready:
            return
        async with self._lock:
            if self._ready:
                return
            t = self.transport
            if not self.manage:
                await t.stream_info(UPDATE_STREAM)  # ConfigurationError when absent
                await t.kv_open(BUCKET, history=BUCKET_HISTORY)  # an existing one is kept
                self._ready = True
                return
            await t.kv_open(BUCKET, history=BUCKET_HISTORY)
            for config in task_streams(self.retention):
                await t.ensure_stream(config)
            self._ready = True

    async def _retrying(self, op: Callable[[], Awaitable[T]]) -> T:
        """``op()``, retried with backoff for up to :data:`RETRY_FOR` s while the engine fails.

        A broker that restarts must not fail the tasks that were running: their
        reads and writes wait for it (the update appends carry a message id, so a
        retried append that had in fact been stored is not stored twice).
        """
        loop = asyncio.get_running_loop()
        end, delay = loop.time() + RETRY_FOR, 0.05
        while True:
            try:
                return await op()
            except TransportClosed:
                raise
            except TransportError as exc:
                if loop.time() + delay > end:
                    raise
                logger.warning("tasks: the engine failed (%s); retrying in %.2fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)

    # -- records ---------------------------------------------------------------------
    async def get(self, task_id: str) -> tuple[TaskRecord, int] | None:
        """The record and its revision, or ``None`` when absent."""
        await self.ensure()
        entry = await self._retrying(lambda: self.transport.kv_get(BUCKET, task_id))
        if entry is None:
            return None
        return decode_record(entry.value), entry.revision

    async def require(self, task_id: str) -> TaskRecord:
        """The record; :class:`~agentcomm.errors.UnknownTask` when absent."""
        if not _valid_id(task_id):
            raise UnknownTask(task_id)
        got = await self.get(task_id)
        if got is None:
            raise UnknownTask(task_id)
        return got[0]

    async def create(self, record: TaskRecord) -> None:
        """Store a new record (its id must be new)."""
        await self.ensure()
        data, ttl, put = encode_record(record), self.retention.max_age, self.transport.kv_put
        with contextlib.suppress(KeyExists):  # a retried put that had been stored (a fresh id)
            await self._retrying(lambda: put(BUCKET, record.id, data, create_only=True, ttl=ttl))

    async def mutate(
        self,
        task_id: str,
        change: Callable[[TaskRecord], TaskRecord | None],
        *,
        known: tuple[TaskRecord, int] | None = None,
    ) -> TaskRecord:
        """Apply ``change`` to the latest record with compare-and-set, retrying lost races.

        ``change`` returns the new record, ``None`` for no change, or raises (a typed
        error, which propagates). Returns the record as stored. ``known`` (a record
        and its revision just read or written) saves the first read; when it is
        stale the write loses and the latest record is read.
        """
        return (await self._change(task_id, change, known))[0]

    async def _change(
        self,
        task_id: str,
        change: Callable[[TaskRecord], TaskRecord | None],
        known: tuple[TaskRecord, int] | None = None,
    ) -> tuple[TaskRecord, int]:
        kv: KVStore = self.transport
        while True:
            got, known = (known, None) if known is not None else (await self.get(task_id), None)
            if got is None:
                raise UnknownTask(task_id)
            record, revision = got
            new = change(record)
            if new is None:
                return record, revision
            new = msgspec.structs.replace(new, updated=now())
            data = encode_record(new)

            def put(
                data: bytes = data, revision: int = revision, ttl: float = self.retention.max_age
            ) -> Awaitable[int]:
                return kv.kv_put(BUCKET, task_id, data, expected_revision=revision, ttl=ttl)

            try:
                stored = await self._retrying(put)
            except RevisionConflict:
                continue
            return new, stored

    async def move(
        self,
        task_id: str,
        state: TaskState,
        *,
        known: tuple[TaskRecord, int] | None = None,
        **fields: object,
    ) -> TaskRecord:
        """Change the state (checked by the state machine) and append the state update."""

        def change(r: TaskRecord) -> TaskRecord:
            check_transition(task_id, r.state, state)
            return msgspec.structs.replace(r, state=state, **fields)

        record = await self.mutate(task_id, change, known=known)
        await self.note(record, "state")
        return record

    async def finish(
        self,
        task_id: str,
        state: TaskState,
        *,
        result: msgspec.Raw = _NULL,
        error: ErrorInfo | None = None,
        check: Callable[[TaskRecord], None] | None = None,
    ) -> TaskRecord:
        """Move to the terminal ``state`` in the three steps of the module docstring."""

        def change(r: TaskRecord) -> TaskRecord:
            if check is not None:
                check(r)
            check_transition(task_id, r.state, state)
            return msgspec.structs.replace(
                r, state=state, result=result, error=error, question=None, answer=None
            )

        done = await self._change(task_id, change)
        kind: UpdateKind = "result" if state == "completed" else "state"
        seq = await self.note(done[0], kind, data=result)
        return await self.mutate(
            task_id,
            lambda r: msgspec.structs.replace(r, closed=True, cursor=max(r.cursor, seq)),
            known=done,
        )

    async def queue(self, work: Envelope) -> None:
        """Append a task's work (its id is the message id: a retried append is stored once)."""
        append = self.transport.append
        await self._retrying(lambda: append(WORK_STREAM, work, msg_id=work.key))

    async def records(self) -> list[TaskRecord]:
        """Every retained record, newest first."""
        await self.ensure()
        out = []
        for entry in await self.transport.kv_entries(BUCKET):
            try:
                out.append(decode_record(entry.value))
            except DecodeError:
                logger.warning("tasks: record %s does not decode; skipped", entry.key)
        out.sort(key=lambda r: r.created, reverse=True)
        return out

    async def watch(self, task_id: str) -> AsyncGenerator[TaskRecord, None]:
        """The record now, then each change of it (reopening the watch if it lagged)."""
        await self.ensure()
        while True:
            w = await self.transport.kv_watch(BUCKET, task_id, snapshot=True, max_pending=64)
            try:
                async for entry in w:
                    if entry is None or entry.operation != "put":
                        continue
                    yield decode_record(entry.value)
            finally:
                await w.aclose()
            if not w.lagged:
                return

    # -- the update log ----------------------------------------------------------------
    async def note(
        self,
        record: TaskRecord,
        kind: UpdateKind,
        *,
        progress: Progress | None = None,
        data: msgspec.Raw = _NULL,
        question: Question | None = None,
    ) -> int:
        """Append one update of ``record`` (its state, attempt, error); return its cursor."""
        body = UpdateBody(
            kind=kind,
            state=record.state,
            attempt=record.attempt,
            progress=progress,
            question=question if question is not None else record.question,
            data=data,
            error=record.error,
        )
        env = Envelope(
            id=new_id(),
            kind="event",
            sender=record.agent,
            topic=update_subject(record.id),
            key=record.id,
            payload=msgspec.Raw(encode_body(body)),
        )
        append = self.transport.append
        return await self._retrying(lambda: append(UPDATE_STREAM, env, msg_id=env.id))

    async def follow(self, task_id: str, since: int) -> AsyncGenerator[TaskUpdate, None]:
        """Every update of the task after cursor ``since``, live, until its last one."""
        record = await self.require(task_id)
        if record.closed and since >= record.cursor:
            return
        config = ConsumerConfig(
            name=f"tu_{new_id().replace('x', '_')}",
            filter_subject=update_subject(task_id),
            deliver="by_start_sequence" if since > 0 else "all",
            opt_start_seq=since + 1 if since > 0 else None,
            max_ack_pending=256,
            ack_wait=60.0,
            inactive_threshold=60.0,
        )
        consumer = await self.transport.open_consumer(UPDATE_STREAM, config)
        last = since
        try:
            while True:
                msgs = await consumer.fetch(64, timeout=POLL)
                for msg in msgs:
                    await msg.ack()
                    if msg.sequence <= last:
                        continue  # a redelivery: never repeated
                    last = msg.sequence
                    update = decode_update(msg.envelope.payload, msg.sequence, msg.envelope.created)
                    yield update
                    if update.final:
                        return
                if not msgs and await self._ended(task_id, last):
                    return
        finally:  # NATS also deletes it after its inactive_threshold
            with contextlib.suppress(TransportError):
                await consumer.close()
                await self.transport.delete_consumer(UPDATE_STREAM, config.name)

    async def _ended(self, task_id: str, last: int) -> bool:
        got = await self.get(task_id)
        if got is None:
            return True  # gone (retention): nothing more will come
        r = got[0]
        if r.state not in TERMINAL:
            return False
        return (r.closed and last >= r.cursor) or (not r.closed and now() - r.updated > 5)


def _valid_id(task_id: object) -> bool:
    return (
        isinstance(task_id, str)
        and 0 < len(task_id) <= 64
        and all(c.isalnum() or c in "_-" for c in task_id)
        and task_id.isascii()
    )
