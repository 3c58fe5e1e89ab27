"""The serving half of an agent: its mailbox, its workers, and what they answer.

Each of an agent's ``concurrency`` workers takes deliveries from the mailbox and
runs their handlers (:meth:`Serving._work`, the hot path); refusals and failures are
answered by the helpers below it. Long-running work (streams, cancels, credit) is
in :mod:`agentcomm.host.work`. The agent (:mod:`agentcomm.host.agent`) owns one
:class:`Serving` for its whole life, so its counters survive a restart.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from agentcomm.core.deadlines import DeadlineWheel, wheel_for
from agentcomm.core.envelope import Envelope, ErrorInfo, new_id
from agentcomm.core.errors import PermissionDenied, RemoteError, TransportError, ValidationError
from agentcomm.core.progress import frame
from agentcomm.core.responses import error_response
from agentcomm.host.context import Context
from agentcomm.host.mailbox import Mailbox
from agentcomm.host.work import MAX_CANCELLED, Credit, Running, on_control, serve_stream

if TYPE_CHECKING:
    from agentcomm.core.schema import HandlerSpec
    from agentcomm.host.services import HostServices
    from agentcomm.transports.base import Delivery

__all__ = ["Serving"]

logger = logging.getLogger("agentcomm")


class _Owner(Protocol):
    """What serving needs of its agent (:class:`agentcomm.host.agent.Agent`)."""

    name: str
    mailbox_size: int
    handlers: dict[str, HandlerSpec]
    proxy: bool
    context_class: ClassVar[type[Context]]

    @property
    def runtime(self) -> HostServices: ...


class Serving:
    """An agent's mailbox, workers and counters (``agent._serving``).

    Example::

        box = agent._serving.prepare()        # the runtime binds ``box``
        agent._serving.spawn(task_group, 16)  # then starts the workers
    """

    def __init__(self, owner: _Owner) -> None:
        self.owner = owner
        self.name = owner.name
        self.handlers = owner.handlers
        self.mailbox: Mailbox | None = None
        self._workers: list[asyncio.Task[None]] = []
        self._tg: asyncio.TaskGroup
        self._concurrency = 1
        self._spawned = False
        self._wheel: DeadlineWheel
        self.busy = 0
        self._idle: asyncio.Future[None] | None = None
        self.handled = self.failed = self.rejected = self.expired = self.cancelled = 0
        #: Each worker's current run, open streams' credit (by stream id), and the
        #: ids of cancelled messages still queued (their sender by id; bounded).
        self.runs: list[Running] = []
        self.credits: dict[str, Credit] = {}
        self._queued_cancels: dict[str, str] = {}

    @property
    def runtime(self) -> HostServices:
        return self.owner.runtime

    def prepare(self) -> Mailbox:
        """A new mailbox for the transport to bind (workers are spawned after)."""
        self.mailbox = Mailbox(
            self.name, self.owner.mailbox_size, control=self.control, backlog=self._backlog
        )
        self._wheel = wheel_for(asyncio.get_running_loop())
        return self.mailbox

    def spawn(self, tg: asyncio.TaskGroup, concurrency: int) -> None:
        """Start the workers on the prepared mailbox: one now, more (up to
        ``concurrency``) as soon as messages wait with no worker free, so an idle agent
        costs one task, not ``concurrency`` (1,000 agents stay small)."""
        assert self.mailbox is not None
        self._tg, self._concurrency = tg, concurrency
        self._workers = []
        self._spawned = True
        self._grow()
        box = self.mailbox
        for _ in range(min(len(box), concurrency - 1)):  # what came before the workers
            self._grow()

    def _backlog(self) -> None:
        """A message waits and no worker is free: start one more, up to ``concurrency``."""
        if self._spawned and len(self._workers) < self._concurrency:
            self._grow()

    def _grow(self) -> None:
        box = self.mailbox
        assert box is not None
        i = len(self._workers)
        self._workers.append(
            self._tg.create_task(self._work(box), name=f"agentcomm:{self.name}:{i}")
        )
        if len(self._workers) >= self._concurrency:
            box.no_backlog_calls()  # all workers are up: the queue's hot path asks no more

    def control(self, env: Envelope) -> None:
        """A cancel or credit frame for this agent (see :func:`on_control`)."""
        guard = self.runtime.guard
        if guard is not None and (bad := guard.admit(self.name, env)) is not None:
            logger.warning(
                "agent %s: %s frame from %s refused: %s", self.name, env.kind, env.sender, bad[2]
            )
            return
        if not on_control(env, self.runs, self.credits):
            cancelled = self._queued_cancels  # not running here (yet): skip it when taken
            cancelled[env.correlation_id or ""] = env.sender
            if len(cancelled) > MAX_CANCELLED:
                del cancelled[next(iter(cancelled))]

    async def stop(self, deadline: float) -> None:
        """Unbind, let queued work finish until ``deadline`` (loop time), then cancel."""
        box = self.mailbox
        if box is None:
            return
        rt = self.runtime
        await rt.transport.unbind(self.name, box)
        box.close()  # senders still waiting for room learn at once that we are gone
        left = deadline - asyncio.get_running_loop().time()
        if (len(box) or self.busy) and left > 0:
            self._idle = asyncio.get_running_loop().create_future()
            try:
                async with asyncio.timeout(left):
                    await self._idle
            except TimeoutError:
                logger.warning(
                    "agent %s: %d messages not handled before the shutdown deadline",
                    self.name,
                    len(box) + self.busy,
                )
            finally:
                self._idle = None
        for task in self._workers:
            task.cancel()
        # Answer what is still queued, so no requester waits for its full timeout.
        while (d := box.get_nowait()) is not None:
            await self._answer_error(
                d, "error", "TransportClosed", f"agent {self.name} shut down before handling it"
            )
        if self._workers:  # let cancelled handlers answer their callers before we detach
            _, stuck = await asyncio.wait(self._workers, timeout=max(1.0, left))
            if stuck:
                logger.error(
                    "agent %s: %d handlers ignored cancellation at shutdown", self.name, len(stuck)
                )
        self._workers = []
        self._spawned = False
        self.runs = []
        self.mailbox = None

    async def _work(self, box: Mailbox) -> None:
        """One worker: takes deliveries from the mailbox and runs their handlers.

        The hot path (a valid request or notification) stays in this one frame;
        refusals and failures are answered by the helpers below.
        """
        task = asyncio.current_task()
        assert task is not None
        handlers = self.handlers
        record = self.runtime.message_log.append
        name = self.name
        items = box._items
        run = Running(task)  # reused: one handler at a time per worker
        self.runs.append(run)
        cancelled = self._queued_cancels
        tracing = self.runtime.tracing
        guard = self.runtime.guard  # limits, signatures, policy (docs/security.md)
        span: AbstractContextManager[Any] | None = None
        while True:
            delivery = items.popleft() if items else await box.get()
            if box._putters:
                box.wake_putter()
            self.busy += 1
            try:
                env = delivery.envelope
                if guard is not None and (bad := guard.admit(name, env)) is not None:
                    self.rejected += 1
                    await self._answer_error(delivery, *bad)
                    continue
                spec = handlers.get(env.handler or "")
                deadline = env.deadline
                if (
                    spec is None
                    or spec.streams
                    or env.kind == "stream"
                    or (cancelled and env.id in cancelled)
                    or (deadline is not None and deadline <= time.time())
                ):
                    await self._refuse(delivery, spec, run)
                    continue
                if tracing is not None:  # continues the caller's trace, in this task
                    span = tracing.span(
                        "process",
                        name,
                        kind="server" if env.kind == "request" else "consumer",
                        parent=env,
                        attributes=tracing.message_attributes(env),
                    )
                    span.__enter__()
                positional = spec.decode_positional
                try:
                    if positional is not None:
                        args = positional(env.payload)  # no kwargs dict: the hot path
                    else:
                        kwargs = spec.decode_args(env.payload)
                except ValidationError as exc:
                    self.rejected += 1
                    await self._answer_error(delivery, "validation", "ValidationError", str(exc))
                    continue
                if spec.context_arg is not None:
                    kwargs[spec.context_arg] = self.owner.context_class(self.owner, env)
                armed = False
                run.env_id, run.sender = env.id, env.sender
                try:
                    if spec.is_async:
                        if deadline is not None:
                            # The receiver gives up at the caller's deadline too: the
                            # transport expires the delivery, or a coalesced timer does.
                            armed = True
                            run.fired = False
                            if delivery.expires:
                                delivery.runner = run
                            else:
                                run.slot = self._wheel.add(run, deadline)
                        if positional is not None:
                            result = await spec.fn(*args)
                        else:
                            result = await spec.fn(**kwargs)
                    elif positional is not None:
                        result = spec.fn(*args)
                    else:
                        result = spec.fn(**kwargs)
                    raw = spec.encode_result(result) if env.kind == "request" else None
                except asyncio.CancelledError:
                    if run.by_caller and task.uncancel() == 0:
                        run.by_caller = False
                        self.cancelled += 1  # the caller has gone: no answer is sent
                        continue
                    if armed and run.fired and task.uncancel() == 0:
                        self.failed += 1
                        await self._answer_error(
                            delivery,
                            "timeout",
                            "TimeoutError",
                            "handler did not finish before the caller's deadline",
                        )
                        continue
                    # Shutdown (or the caller's task group) cancelled us mid-handler:
                    # answer the requester now rather than leave it to its timeout.
                    self.failed += 1
                    await self._answer_error(
                        delivery,
                        "error",
                        "TransportClosed",
                        f"agent {name} shut down while handling it",
                    )
                    raise
                except Exception as exc:
                    self.failed += 1
                    await self._handler_failed(delivery, spec, exc)
                    continue
                finally:
                    run.env_id = None
                    if armed:
                        if run.slot:
                            self._wheel.discard(run, run.slot)
                            run.slot = 0
                        delivery.runner = None
                self.handled += 1
                if raw is not None:
                    resp = Envelope(
                        id=new_id(),
                        kind="response",
                        sender=name,
                        recipient=env.sender,
                        correlation_id=env.id,
                        causation_id=env.id,
                        traceparent=env.traceparent,
                        payload=raw,
                        schema=spec.output_name,
                    )
                    if guard is not None:
                        resp = guard.seal_reply(env, resp)
                    record(resp)
                    pending = delivery.reply(resp)
                    if pending is not None:
                        await pending
            finally:
                if span is not None:
                    span.__exit__(None, None, None)
                    span = None
                self.busy -= 1
                if self._idle is not None and not self.busy and not items:
                    if not self._idle.done():
                        self._idle.set_result(None)

    async def _answer_error(
        self, delivery: Delivery, code: str, exc_type: str, msg: str, origin: str | None = None
    ) -> None:
        env = delivery.envelope
        tracing = self.runtime.tracing
        if tracing is not None:
            tracing.record_failure(code, exc_type, msg)
        if env.kind == "request":
            resp = error_response(env, self.name, code, exc_type, msg, origin)
            if self.runtime.guard is not None:
                resp = self.runtime.guard.seal_reply(env, resp)
            self.runtime.record(resp)
            pending = delivery.reply(resp)
            if pending is not None:
                await pending
        elif env.kind == "stream" and env.reply_to:
            end = frame(
                "end", env, self.name, error=ErrorInfo(code=code, type=exc_type, message=msg)
            )
            if self.runtime.guard is not None:
                end = self.runtime.guard.seal_reply(env, end)
            await self.runtime.transport.post(env.reply_to, end)
        else:
            self.runtime.report_failure(env, f"{exc_type}: {msg}")

    async def _serve_stream(self, delivery: Delivery, spec: HandlerSpec, run: Running) -> None:
        env = delivery.envelope
        try:
            kwargs = spec.decode_args(env.payload)
        except ValidationError as exc:
            self.rejected += 1
            await self._answer_error(delivery, "validation", "ValidationError", str(exc))
            return
        if spec.context_arg is not None:
            kwargs[spec.context_arg] = self.owner.context_class(self.owner, env)
        tracing = self.runtime.tracing
        span = None
        if tracing is not None:
            attrs = tracing.message_attributes(env)
            span = tracing.span("process", self.name, kind="server", parent=env, attributes=attrs)
            span.__enter__()
        try:
            outcome = await serve_stream(
                delivery,
                spec,
                run,
                lambda: spec.fn(**kwargs),
                self.name,
                self.runtime,
                self.credits,
                self._wheel,
            )
            if outcome == "handled":
                self.handled += 1
            elif outcome == "cancelled":
                self.cancelled += 1
            else:
                self.failed += 1
        finally:
            if span is not None:
                span.__exit__(*sys.exc_info())

    async def _refuse(self, delivery: Delivery, spec: HandlerSpec | None, run: Running) -> None:
        """Answer what the hot path does not take: refusals, cancels, and streams."""
        env = delivery.envelope
        if spec is not None and self._queued_cancels.pop(env.id, None) == env.sender:
            self.cancelled += 1  # cancelled by its caller while it waited in the mailbox
            return
        if spec is not None and spec.streams and env.kind == "stream":
            if env.deadline is None or env.deadline > time.time():
                await self._serve_stream(delivery, spec, run)
                return
        if spec is not None and spec.streams != (env.kind == "stream"):
            self.rejected += 1
            verb = "stream()" if spec.streams else "request() or send()"
            msg = f"handler {spec.name!r} of agent {self.name!r} must be called with {verb}"
            await self._answer_error(delivery, "unknown_handler", "UnknownHandler", msg)
        elif spec is None:
            self.rejected += 1
            msg = (
                f"agent {self.name!r} has no handler {env.handler!r}; "
                f"it has {sorted(self.handlers)}"
            )
            await self._answer_error(delivery, "unknown_handler", "UnknownHandler", msg)
        else:
            self.expired += 1
            await self._answer_error(
                delivery, "timeout", "RequestTimeout", "deadline passed before the handler ran"
            )

    async def _handler_failed(self, delivery: Delivery, spec: HandlerSpec, exc: Exception) -> None:
        if isinstance(exc, ValidationError):
            msg = f"handler {spec.name!r} returned a value that breaks its schema: {exc}"
        else:
            msg = str(exc)
            if delivery.envelope.kind != "request":
                logger.error("agent %s: handler %s failed", self.name, spec.name, exc_info=exc)
        # A proxy agent whose engine failed (an MCP server gone) reports it as such;
        # any other handler's failure is a RemoteError for its caller.
        code = "error"
        if self.owner.proxy:
            if isinstance(exc, TransportError):
                code = "transport"
            elif isinstance(exc, PermissionDenied):  # the remote side refused the caller
                code = "permission"
        if isinstance(exc, RemoteError):  # let through from an agent it called: one chain
            await self._answer_error(delivery, code, exc.type, exc.message, exc.origin)
            return
        await self._answer_error(delivery, code, type(exc).__name__, msg)
