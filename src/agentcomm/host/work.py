"""Long-running work on the serving side: cancellation, credit, and stream handlers.

* A handler run is a :class:`Running`: the deadline wheel expires it, and a
  ``cancel`` frame from its caller cancels it (the handler sees
  ``asyncio.CancelledError``; its late answer is never sent).
* Control frames (``cancel``, ``credit``) reach :func:`on_control` through the
  mailbox, past the queue (``Transport.signal``).
* :func:`serve_stream` runs an async generator handler: each chunk it yields is
  validated, waits for the caller's credit, and is posted to the caller's channel;
  an ``end`` frame closes the stream (with the error, if the handler failed).

The protocol is in ``docs/streams-and-tasks.md``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgspec

from agentcomm.core.envelope import Envelope, ErrorInfo
from agentcomm.core.errors import ValidationError
from agentcomm.core.progress import DEFAULT_WINDOW, MAX_WINDOW, WINDOW_HEADER, frame

if TYPE_CHECKING:
    from agentcomm.core.deadlines import DeadlineWheel
    from agentcomm.core.schema import HandlerSpec
    from agentcomm.host.services import HostServices
    from agentcomm.transports.base import Delivery

__all__ = ["MAX_CANCELLED", "Credit", "Running", "on_control", "serve_stream"]

logger = logging.getLogger("agentcomm")

#: Cancelled ids of messages still queued, remembered so they are skipped (bounded).
MAX_CANCELLED = 4096


class Running:
    """A handler run that its deadline or its caller may cancel (one per worker)."""

    __slots__ = ("by_caller", "env_id", "fired", "sender", "slot", "task")

    def __init__(self, task: asyncio.Task[None]) -> None:
        self.task = task
        self.fired = False
        self.by_caller = False
        self.slot = 0
        #: The id and sender of the message being handled (None between messages).
        self.env_id: str | None = None
        self.sender = ""

    def expire(self) -> None:
        self.fired = True
        self.task.cancel()

    def cancel(self) -> None:
        self.by_caller = True
        self.task.cancel()


class Credit:
    """How many more chunks a stream's caller has room for; the producer waits at 0."""

    __slots__ = ("_waiter", "available", "sender")

    def __init__(self, window: int, sender: str) -> None:
        self.available = window
        self.sender = sender
        self._waiter: asyncio.Future[None] | None = None

    def grant(self, n: int) -> None:
        self.available = min(self.available + n, MAX_WINDOW)
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    async def take(self) -> None:
        while self.available <= 0:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        self.available -= 1


def on_control(env: Envelope, runs: list[Running], credits: dict[str, Credit]) -> bool:
    """Act on a ``cancel`` or ``credit`` frame; False for a cancel of nothing running.

    Only the sender of the message being cancelled or credited is heard.
    """
    target = env.correlation_id or ""
    if env.kind == "credit":
        credit = credits.get(target)
        if credit is not None and credit.sender == env.sender:
            try:
                n = msgspec.json.decode(env.payload, type=int)
            except (msgspec.DecodeError, msgspec.ValidationError):
                return True
            if n > 0:
                credit.grant(n)
        return True
    if env.kind != "cancel":
        return True
    for run in runs:
        if run.env_id == target and run.sender == env.sender:
            if not run.by_caller:
                run.cancel()
            return True
    return False


def _window(env: Envelope) -> int:
    try:
        window = int(env.headers.get(WINDOW_HEADER, DEFAULT_WINDOW))
    except ValueError:
        window = DEFAULT_WINDOW
    return max(1, min(window, MAX_WINDOW))


async def serve_stream(
    delivery: Delivery,
    spec: HandlerSpec,
    run: Running,
    call: Callable[[], Any],
    name: str,
    rt: HostServices,
    credits: dict[str, Credit],
    wheel: DeadlineWheel,
) -> str:
    """Run the stream handler ``call()`` (an async generator) for ``delivery``.

    Returns ``"handled"``, ``"cancelled"`` (by its caller: nothing more is sent) or
    ``"failed"`` (the ``end`` frame carries the error).
    """
    env = delivery.envelope
    post, guard = rt.transport.post, rt.guard
    reply_to = env.reply_to or ""

    async def send(kind: Any, **fields: Any) -> None:
        out = frame(kind, env, name, **fields)
        if guard is not None:
            out = guard.seal_reply(env, out)
        await post(reply_to, out)

    credit = credits[env.id] = Credit(_window(env), env.sender)
    chunk = frame("chunk", env, name)  # each chunk: this with its id, sequence, payload
    base, replace, now = chunk.id + ".", msgspec.structs.replace, time.time
    run.env_id, run.sender, run.by_caller, run.fired = env.id, env.sender, False, False
    if env.deadline is not None:
        run.slot = wheel.add(run, env.deadline)
    seq = 0
    try:
        gen = call()
        try:
            throw: BaseException | None = None
            while True:
                try:
                    item = await (gen.__anext__() if throw is None else gen.athrow(throw))
                except StopAsyncIteration:
                    break
                throw = None
                try:
                    raw = spec.encode_result(item)
                except ValidationError as exc:  # the producer hears of it, the caller not
                    throw = ValidationError(f"stream {spec.name!r} yielded a bad chunk: {exc}")
                    continue
                try:
                    if credit.available > 0:  # inlined Credit.take (the hot path)
                        credit.available -= 1
                    else:
                        await credit.take()
                    seq += 1
                    out = replace(
                        chunk, id=f"{base}{seq}", sequence=seq, payload=raw, created=now()
                    )
                    if guard is not None:
                        out = guard.seal_reply(env, out)
                    await post(reply_to, out)
                except asyncio.CancelledError:
                    await _throw_cancel(gen)  # the handler sees it where it yielded
                    raise
        finally:
            await gen.aclose()
        await send("end", sequence=seq)
        return "handled"
    except asyncio.CancelledError:
        if run.by_caller and run.task.uncancel() == 0:
            return "cancelled"  # the caller has gone: nothing is sent back
        if run.fired and run.task.uncancel() == 0:
            await send("end", sequence=seq, error=_error("timeout", "TimeoutError", "deadline"))
            return "failed"
        err = _error("error", "TransportClosed", f"agent {name} shut down while streaming")
        await send("end", sequence=seq, error=err)
        raise
    except Exception as exc:
        await send("end", sequence=seq, error=_error("error", type(exc).__name__, str(exc)))
        return "failed"
    finally:
        credits.pop(env.id, None)
        run.env_id = None
        run.by_caller = run.fired = False
        if run.slot:
            wheel.discard(run, run.slot)
            run.slot = 0


async def _throw_cancel(gen: Any) -> None:
    try:
        await gen.athrow(asyncio.CancelledError())
    except (asyncio.CancelledError, StopAsyncIteration):
        return
    except Exception:
        logger.exception("stream handler failed while being cancelled")


def _error(code: str, exc_type: str, message: str) -> ErrorInfo:
    if message == "deadline":
        message = "the stream did not finish before the caller's deadline"
    return ErrorInfo(code=code, type=exc_type, message=message)
