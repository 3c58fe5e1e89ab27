"""Streams on the calling side: a remote async generator, read with ``async for``.

``stream = await agent.stream("writer", "draft", {"topic": "x"}, returns=str)``
opens a private channel, sends a ``stream`` envelope whose ``reply_to`` names it,
and returns a :class:`Stream`. The producer may send as many chunks as the caller
has room for (its *window*, the initial credit); as the caller reads, it gives the
credit back in batches of half a window, so neither side ever holds more than one
window of chunks. Leaving the ``async for`` (``break``, an exception, a cancelled
task) or the deadline sends a ``cancel``: the handler sees ``CancelledError``.
The protocol is in ``docs/streams-and-tasks.md``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import msgspec

from agentcomm.core.errors import AgentCommError, RequestTimeout, TransportError
from agentcomm.core.progress import Progress, frame
from agentcomm.core.responses import raise_remote
from agentcomm.core.schema import codec_for

if TYPE_CHECKING:
    from agentcomm.core.envelope import Envelope
    from agentcomm.host.services import HostServices
    from agentcomm.transports.channels import Channel

__all__ = ["ProgressCallback", "Stream", "on_progress_frame"]

logger = logging.getLogger("agentcomm")

T = TypeVar("T")

#: ``on_progress(progress)``: called in the caller's task for each progress report.
ProgressCallback = Callable[[Progress], None]

_progress_decoder = msgspec.json.Decoder(Progress)
_json_decode = msgspec.json.Decoder().decode


def on_progress_frame(env: Envelope, callback: ProgressCallback | None) -> Progress | None:
    """Decode a progress frame and hand it to ``callback``; a bad frame is logged."""
    try:
        report = _progress_decoder.decode(env.payload)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        logger.warning("progress frame from %s is invalid: %s", env.sender, exc)
        return None
    if callback is not None:
        try:
            callback(report)
        except Exception:
            logger.exception("on_progress callback failed")
    return report


class Stream(Generic[T]):
    """The chunks of a remote stream handler, in order; iterate it once.

    Raises, from the iteration: :class:`RequestTimeout` at the deadline,
    :class:`RemoteError` (or the typed error of its code) when the handler failed,
    :class:`ValidationError` for a chunk that breaks ``returns`` (the stream goes on:
    iterate again for the next chunk), :class:`TransportError` when a chunk was lost.

    Example::

        async with await client.stream("writer", "draft", {"topic": "tea"}, returns=str) as s:
            async for part in s:
                print(part, s.progress)
    """

    def __init__(
        self,
        rt: HostServices,
        sender: str,
        env: Envelope,
        returns: Any,
        window: int,
        on_progress: ProgressCallback | None,
        timeout: float,
    ) -> None:
        self._rt = rt
        self._sender = sender
        self.envelope = env
        codec = None if returns is None else codec_for(returns)
        self._decode = _json_decode if codec is None else codec.decoder()
        self._fast = _json_decode if codec is None else codec.fast_decode
        self._window = window
        self._on_progress = on_progress
        self._timeout = timeout
        self._chunks: deque[Envelope] = deque()
        self._end: Envelope | None = None
        self._fault: AgentCommError | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._seen = 0  # sequence of the last chunk received
        self._taken = 0  # chunks read and not yet credited back
        self._channel: Channel | None = None
        self._done = False
        self._iterating = False
        self._trusting = rt.guard is None  # no signatures or limits to check per frame
        self._id: str | None = None
        self._peer = env.recipient
        #: The latest progress report (``None`` before the first).
        self.progress: Progress | None = None

    # -- the channel's side (runs in the transport's task; never blocks) -----------
    def _on_frame(self, env: Envelope) -> None:
        chunks = self._chunks
        if (
            self._trusting
            and env.kind == "chunk"
            and env.sequence == self._seen + 1
            and env.correlation_id == self._id
            and env.sender == self._peer
            and len(chunks) < self._window
        ):  # the hot path: the next chunk from our peer, within credit, no guard
            self._seen += 1
            chunks.append(env)
            w = self._waiter
            if w is not None and not w.done():
                w.set_result(None)
            return
        me = self.envelope
        if env.correlation_id != me.id or env.sender != me.recipient:
            return  # not from the agent we called: never trusted
        guard = self._rt.guard
        if guard is not None:
            try:
                guard.check_response(me, env)
            except AgentCommError as exc:
                self._fail(exc)
                return
        if env.kind == "chunk":
            if env.sequence != self._seen + 1:
                self._fail(
                    TransportError(
                        f"stream {me.handler!r} of {me.recipient!r} lost "
                        f"chunks {self._seen + 1}..{(env.sequence or 0) - 1}"
                    )
                )
                return
            self._seen += 1
            if len(self._chunks) >= self._window:
                self._fail(TransportError(f"{me.recipient!r} sent more chunks than its credit"))
                return
            self._chunks.append(env)
        elif env.kind == "progress":
            self.progress = on_progress_frame(env, self._on_progress) or self.progress
            return
        elif env.kind == "end":
            self._end = env
        self._wake()

    def _fail(self, exc: AgentCommError) -> None:
        if self._fault is None:
            self._fault = exc
        self._wake()

    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    # -- the caller's side ------------------------------------------------------------
    async def _open(self) -> None:
        rt = self._rt
        self._channel = await rt.transport.open_channel(self._on_frame)
        env = msgspec.structs.replace(self.envelope, reply_to=self._channel.address)
        guard = rt.guard
        if guard is not None:
            env = await guard.hold(env)
        self.envelope = env
        self._id, self._peer = env.id, env.recipient
        rt.record(env)
        try:
            await rt.transport.send(env, block=True)
        except BaseException:
            await self._close_channel()
            raise

    def __aiter__(self) -> AsyncIterator[T]:
        if self._iterating:
            raise TransportError("a stream can be iterated only once")
        self._iterating = True
        return _Chunks(self)

    async def _next(self) -> Envelope | None:
        """The next chunk frame, ``None`` at the end; raises the stream's errors."""
        loop = asyncio.get_running_loop()
        deadline = self.envelope.deadline
        while not self._chunks:
            if self._fault is not None:
                raise self._fault
            end = self._end
            if end is not None:
                self._done = True
                if end.error is not None:
                    raise_remote(end, self.envelope, self._timeout)
                return None
            left = None if deadline is None else deadline - time.time()
            if left is not None and left <= 0:
                raise RequestTimeout(
                    self.envelope.recipient or "?", self.envelope.handler, self._timeout
                )
            self._waiter = loop.create_future()
            try:
                async with asyncio.timeout(left):
                    await self._waiter
            except TimeoutError:
                pass  # the loop raises RequestTimeout
            finally:
                self._waiter = None
        env = self._chunks.popleft()
        self._taken += 1
        if self._taken * 2 >= self._window and self._end is None:
            n, self._taken = self._taken, 0
            await self._signal("credit", str(n).encode())
        return env

    async def _signal(self, kind: Any, payload: bytes | None = None) -> None:
        out = frame(kind, self.envelope, self._sender, payload=payload)
        guard = self._rt.guard
        if guard is not None:
            out = guard.seal(out)
        try:
            await self._rt.transport.signal(out)
        except AgentCommError as exc:
            logger.warning("%s to %s not sent: %s", kind, self.envelope.recipient, exc)

    async def aclose(self) -> None:
        """Stop reading: cancel the remote handler if it has not ended. Idempotent.

        Example::

            await stream.aclose()
        """
        if self._channel is None:
            return
        if not self._done and self._end is None:
            self._done = True
            await self._signal("cancel")
        await self._close_channel()

    async def _close_channel(self) -> None:
        ch, self._channel = self._channel, None
        if ch is not None:
            await ch.close()

    async def __aenter__(self) -> Stream[T]:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class _Chunks(AsyncIterator[T]):
    """The iteration of a :class:`Stream`: leaving it early cancels the producer.

    A plain iterator rather than an async generator, so that a chunk the caller's
    type refuses raises ValidationError and the next ``anext`` still works. When
    the loop lets go of it before the end (``break``), ``__del__`` closes the stream.
    """

    __slots__ = ("_stream",)

    def __init__(self, stream: Stream[T]) -> None:
        self._stream = stream

    async def __anext__(self) -> T:
        stream = self._stream
        chunks = stream._chunks
        if chunks and stream._taken * 2 + 2 < stream._window:  # the hot path
            stream._taken += 1
            payload = chunks.popleft().payload
            fast = stream._fast
            if fast is not None:
                try:
                    decoded: T = fast(payload)
                    return decoded
                except Exception:  # decoded again below, for the typed error
                    pass
            slow: T = stream._decode(payload)
            return slow
        try:
            env = await stream._next()
        except BaseException:  # the end of it: a timeout, its error, our cancellation
            await stream.aclose()
            raise
        if env is None:
            await stream.aclose()
            raise StopAsyncIteration
        result: T = stream._decode(env.payload)
        return result

    def __del__(self) -> None:
        stream = self._stream
        if stream._channel is not None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return
            task = loop.create_task(stream.aclose())
            _closing.add(task)
            task.add_done_callback(_closing.discard)


#: Closes scheduled by iterations dropped early (kept so they are not collected).
_closing: set[asyncio.Task[None]] = set()
