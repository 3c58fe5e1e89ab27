"""Running tasks: one worker per agent instance that declared task handlers.

The worker pulls work from the agent's durable consumer group on the work stream
(one instance runs each task), holds the message as its *lease* (renewed with
``in_progress()`` every ``lease / 3`` seconds) and acks it when the task reached a
terminal state. A worker that dies stops renewing: the engine redelivers the work
after ``lease`` seconds to another instance, which sees a record still
``working``/``input-required`` and re-runs it (attempt + 1) or fails it, per the
handler's ``on_lost`` and ``max_attempts``.

While a handler runs, a watch on its record delivers cancel requests (the handler
sees ``asyncio.CancelledError``) and answers to ``ctx.ask`` (validated here; a bad
one is marked rejected on the record, for the answerer to raise).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from typing import TYPE_CHECKING, Any

import msgspec

from agentcomm.core.envelope import ErrorInfo, encode_payload
from agentcomm.core.errors import ConfigurationError, TransportError, ValidationError
from agentcomm.core.progress import Progress
from agentcomm.core.schema import codec_for
from agentcomm.core.task_errors import InputTimeout, TaskError, TaskFinished
from agentcomm.tasks.declare import TaskSpec, task_specs
from agentcomm.tasks.model import (
    TERMINAL,
    WORK_STREAM,
    Question,
    TaskRecord,
    TaskState,
    work_subject,
)
from agentcomm.tasks.stats import TaskCounters
from agentcomm.transports.streams import ConsumerConfig

if TYPE_CHECKING:
    from agentcomm.core.schema import Codec
    from agentcomm.host.agent import Agent
    from agentcomm.tasks.store import Store
    from agentcomm.transports.streams import LogMessage

__all__ = ["Worker"]

_NULL = msgspec.Raw(b"null")


def _error(code: str, exc: Exception) -> ErrorInfo:
    return ErrorInfo(code=code, type=type(exc).__name__, message=str(exc))


logger = logging.getLogger("agentcomm")


class _Run:
    """One task being run here: the ``ctx.task`` hook (progress, ask) and its cancel."""

    def __init__(
        self, store: Store, record: TaskRecord, task: asyncio.Task[Any], msg: LogMessage
    ) -> None:
        self.store = store
        #: The delivery of the work that is this run's lease (a redelivery replaces it).
        self.msg = msg
        self.task_id = record.id
        self.attempt = record.attempt
        self.task = task
        self.by_request = False
        #: The newest version of the record seen here (the watch, this run's own writes):
        #: what the updates this run appends say of the state.
        self.record = record
        #: The question waiting for an answer: (question, codec, future of the value).
        self.waiting: tuple[Question, Codec | None, asyncio.Future[Any]] | None = None

    async def progress(self, done: float, total: float | None, message: str | None) -> None:
        p = Progress(done=done, total=total, message=message)
        seq = await self.store.note(self.record, "progress", progress=p)
        self.see(
            await self.store.mutate(
                self.task_id,
                lambda r: msgspec.structs.replace(r, progress=p, cursor=max(r.cursor, seq)),
            )
        )

    def see(self, r: TaskRecord) -> None:
        """Keep ``r`` if it is at least as new as the record known here."""
        if r.updated >= self.record.updated:
            self.record = r

    async def ask(self, question: Any, returns: Any, timeout: float | None) -> Any:
        if timeout is not None and timeout <= 0:
            raise ConfigurationError(f"ctx.ask timeout must be positive seconds, got {timeout}")
        codec = None if returns is None else codec_for(returns)
        schema: dict[str, Any] = {}
        if codec is not None:
            with contextlib.suppress(ConfigurationError):
                schema = codec.json_schema()
        asked = time.time()
        q = Question(
            id=uuid.uuid4().hex,
            prompt=encode_payload(question),
            schema=schema,
            asked=asked,
            deadline=None if timeout is None else asked + timeout,
        )
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.waiting = (q, codec, fut)
        self.see(await self.store.move(self.task_id, "input-required", question=q, answer=None))
        try:
            async with asyncio.timeout(timeout):
                return await fut
        except TimeoutError:
            pass
        finally:
            self.waiting = None
        if fut.done() and not fut.cancelled():
            return fut.result()

        moved = False

        def back(r: TaskRecord) -> TaskRecord | None:
            nonlocal moved
            moved = r.state == "input-required" and r.question is not None and r.question.id == q.id
            if not moved:
                return None
            return msgspec.structs.replace(r, state="working", question=None, answer=None)

        record = await self.store.mutate(self.task_id, back)
        self.see(record)
        if moved:
            await self.store.note(record, "state")
        raise InputTimeout(
            self.task_id, f"task {self.task_id}: no valid answer within {timeout:g}s"
        )

    async def on_record(self, r: TaskRecord) -> None:
        """React to a change of the record: a cancel request, an answer to check."""
        self.see(r)
        superseded = r.state in TERMINAL or r.attempt != self.attempt  # after a partition
        if (r.cancel_requested or superseded) and not self.by_request:
            self.by_request = True
            self.task.cancel()
            return
        waiting = self.waiting
        a = r.answer
        if waiting is None or a is None or a.rejected is not None or r.state != "input-required":
            return
        q, codec, fut = waiting
        if a.question_id != q.id or fut.done():
            return
        try:
            value = msgspec.json.decode(a.value) if codec is None else codec.decode(a.value)
        except ValidationError as exc:
            reason = str(exc)

            def refuse(cur: TaskRecord) -> TaskRecord | None:
                if cur.answer is None or cur.answer.id != a.id:
                    return None
                return msgspec.structs.replace(
                    cur, answer=msgspec.structs.replace(cur.answer, rejected=reason)
                )

            await self.store.mutate(self.task_id, refuse)
            return

        def accept(cur: TaskRecord) -> TaskRecord | None:
            if cur.answer is None or cur.answer.id != a.id or cur.state != "input-required":
                return None
            return msgspec.structs.replace(
                cur, state="working", question=None, answer=None, answered=a.id
            )

        record = await self.store.mutate(self.task_id, accept)
        self.see(record)
        if record.answered == a.id:
            await self.store.note(record, "state")
            if not fut.done():
                fut.set_result(value)


class Worker:
    """Runs the task handlers of one agent instance (see the module docstring).

    Example::

        worker = Worker(agent, store, concurrency=16, lease=3.0)
        tg.create_task(worker.pump())
    """

    def __init__(self, agent: Agent, store: Store, *, concurrency: int, lease: float) -> None:
        self.agent = agent
        self.store = store
        self.concurrency = concurrency
        self.lease = lease
        self.runs: dict[str, _Run] = {}
        self.counters = TaskCounters()
        #: Deliveries being handled (looked at, started, running): bounded by concurrency.
        self.busy = 0
        self.closing = False
        self._free = asyncio.Event()
        self._free.set()
        self._tg: asyncio.TaskGroup | None = None

    def _spec(self, handler: str | None) -> TaskSpec | None:
        for s in task_specs(self.agent):
            if s.name == handler:
                return s
        return None

    async def pump(self, tg: asyncio.TaskGroup) -> None:
        """Fetch work while there is room, each task run in its own task of ``tg``."""
        config = ConsumerConfig(
            name=f"tasks__{self.agent.name}",
            filter_subject=work_subject(self.agent.name),
            deliver="all",
            max_ack_pending=10_000,
            ack_wait=self.lease,
        )
        self._tg = tg
        await self.store.ensure()
        consumer = await self.store.transport.open_consumer(WORK_STREAM, config)
        try:
            while not self.closing:
                room = self.concurrency - self.busy
                if room <= 0:
                    self._free.clear()
                    await self._free.wait()
                    continue
                try:
                    msgs = await consumer.fetch(room, timeout=1.0)
                except TransportError as exc:
                    logger.warning("tasks: %s could not fetch work: %s", self.agent.name, exc)
                    await asyncio.sleep(1.0)
                    continue
                for msg in msgs:
                    self.busy += 1
                    tg.create_task(self._guarded(msg), name=f"agentcomm:task:{msg.sequence}")
        finally:
            with contextlib.suppress(TransportError):
                await consumer.close()

    async def _guarded(self, msg: LogMessage) -> None:
        try:
            await self._run(msg)
        except (TaskError, TransportError) as exc:
            name = self.agent.name
            logger.warning("tasks: %s: work %d not finished: %s", name, msg.sequence, exc)
            with contextlib.suppress(TransportError):
                await msg.nak(self.lease)
        except Exception:  # a bug or a hostile record: logged, never fatal to the runtime
            logger.exception("tasks: %s: work %d failed", self.agent.name, msg.sequence)
            with contextlib.suppress(TransportError):
                await msg.nak(self.lease)
        finally:
            self.busy -= 1
            self._free.set()

    async def _run(self, msg: LogMessage) -> None:
        env = msg.envelope
        task_id = env.key or ""
        got = await self.store.get(task_id) if task_id else None
        if got is None:
            logger.warning("tasks: work %d names no retained task (%r)", msg.sequence, task_id)
            await msg.term()
            return
        record = got[0]
        if record.state in TERMINAL:
            await msg.ack()  # a duplicate delivery of finished work
            return
        running = self.runs.get(task_id)
        if running is not None:  # redelivered while it runs here (the lease lapsed):
            running.msg = msg  # renew and settle this delivery from now on
            return
        guard = self.agent.runtime.guard  # limits, signature, policy (docs/security.md)
        if guard is not None and (bad := guard.admit_work(self.agent.name, env)) is not None:
            self.counters.refused += 1
            await self._fail(task_id, *bad)  # the task's caller reads why
            await msg.term()
            return
        spec = self._spec(env.handler)
        if spec is None:
            await self._fail(
                task_id,
                "unknown_handler",
                "UnknownHandler",
                f"agent {self.agent.name!r} has no task handler {env.handler!r}",
            )
            await msg.ack()
            return
        if record.cancel_requested:
            await self.store.finish(task_id, "canceled")
            await msg.ack()
            return
        if record.state != "submitted" and not record.released:
            if spec.on_lost == "fail" or record.attempt >= spec.max_attempts:
                why = (
                    "its policy is on_lost='fail'"
                    if spec.on_lost == "fail"
                    else (f"no attempts left ({record.attempt} of {spec.max_attempts})")
                )
                self.counters.lost += 1
                await self._fail(
                    task_id,
                    "lost",
                    "TaskLost",
                    f"the worker running attempt {record.attempt} stopped renewing "
                    f"its lease and {why}",
                )
                await msg.ack()
                return
        if record.attempt:
            self.counters.rerun += 1
        record = await self.store.move(
            task_id,
            "working",
            known=got,
            attempt=record.attempt + 1,
            question=None,
            answer=None,
            released=False,
        )
        await self._execute(msg, spec, record)

    async def _fail(self, task_id: str, code: str, exc_type: str, message: str) -> None:
        await self.store.finish(
            task_id, "failed", error=ErrorInfo(code=code, type=exc_type, message=message)
        )

    async def _execute(self, msg: LogMessage, spec: TaskSpec, record: TaskRecord) -> None:
        self.counters.runs += 1
        current = asyncio.current_task()
        assert current is not None
        run = _Run(self.store, record, current, msg)
        self.runs[record.id] = run
        tg = self._tg
        assert tg is not None
        watch = tg.create_task(self._watch(run), name=f"agentcomm:task-watch:{record.id}")
        beat = tg.create_task(self._heartbeat(run), name=f"agentcomm:task-lease:{record.id}")
        try:
            try:
                result = await self._traced_call(spec, msg, run)
            except asyncio.CancelledError:
                if run.by_request and current.uncancel() == 0:
                    await self._settle(run, "canceled")
                    return
                await self._release(record.id, run.msg)  # shutting down: re-run elsewhere
                raise
            except ValidationError as exc:
                await self._settle(run, "failed", _error("validation", exc))
            except Exception as exc:
                await self._settle(run, "failed", _error("error", exc))
            else:
                await self._settle(run, "completed", result=result)
        finally:
            watch.cancel()
            beat.cancel()
            self.runs.pop(record.id, None)

    async def _settle(
        self,
        run: _Run,
        state: TaskState,
        error: ErrorInfo | None = None,
        result: msgspec.Raw = _NULL,
    ) -> None:
        """Write the end of the run and settle its work (someone else may have ended it)."""
        self.counters.ended(state)
        with contextlib.suppress(TaskFinished):
            await self.store.finish(run.task_id, state, result=result, error=error)
        await run.msg.ack()

    async def _traced_call(self, spec: TaskSpec, msg: LogMessage, run: _Run) -> msgspec.Raw:
        """:meth:`_call`, in a ``"process <agent>.<handler>"`` span when tracing is on."""
        tracing = self.agent.runtime.tracing
        if tracing is None:
            return await self._call(spec, msg, run)
        env = msg.envelope
        attrs = tracing.message_attributes(env)
        attrs["agentcomm.task.id"] = run.task_id
        attrs["agentcomm.attempt"] = run.attempt
        name = f"{self.agent.name}.{spec.name}"
        with tracing.span("process", name, kind="consumer", parent=env, attributes=attrs):
            try:
                return await self._call(spec, msg, run)
            except Exception as exc:
                tracing.record_failure("error", type(exc).__name__, str(exc))
                raise

    async def _call(self, spec: TaskSpec, msg: LogMessage, run: _Run) -> msgspec.Raw:
        env, h = msg.envelope, spec.handler
        kwargs = h.decode_args(env.payload)
        if h.context_arg is not None:
            ctx = self.agent.context_class(self.agent, env)
            ctx.task = run
            kwargs[h.context_arg] = ctx
        if not h.streams:
            return h.encode_result(await h.fn(**kwargs))
        gen = h.fn(**kwargs)
        try:
            throw: BaseException | None = None
            while True:
                try:
                    item = await (gen.__anext__() if throw is None else gen.athrow(throw))
                except StopAsyncIteration:
                    break
                throw = None
                try:
                    raw = h.encode_result(item)
                except ValidationError as exc:  # the producer hears of it; the caller not
                    throw = ValidationError(f"task {h.name!r} yielded a bad chunk: {exc}")
                    continue
                await self.store.note(run.record, "artifact", data=raw)
        finally:
            await gen.aclose()
        return msgspec.Raw(b"null")

    async def _release(self, task_id: str, msg: LogMessage) -> None:
        """Mark the run released (not lost) and hand the work back at once."""

        def release(r: TaskRecord) -> TaskRecord | None:
            if r.state in TERMINAL:
                return None
            return msgspec.structs.replace(r, released=True)

        with contextlib.suppress(TaskError, TransportError):
            await asyncio.shield(self.store.mutate(task_id, release))
        with contextlib.suppress(TransportError):
            await msg.nak()

    async def _watch(self, run: _Run) -> None:
        try:
            async for record in self.store.watch(run.task_id):
                await run.on_record(record)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("tasks: the watch of task %s failed", run.task_id)

    async def _heartbeat(self, run: _Run) -> None:
        while True:
            await asyncio.sleep(self.lease / 3)
            try:
                await run.msg.in_progress()
            except TransportError as exc:
                logger.warning("tasks: lease of task %s not renewed: %s", run.task_id, exc)

    async def close(self) -> None:
        """Stop taking work and release the tasks running here (another worker re-runs them)."""
        self.closing = True
        self._free.set()
        for run in list(self.runs.values()):
            run.task.cancel()
