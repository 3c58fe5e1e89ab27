"""Direct messages: ``send`` (a notification) and ``request`` (request/response).

:class:`DirectMessages` is the talking half of an agent (``agent.send``,
``agent.request`` delegate to it); the serving half (mailbox, workers, handlers)
is the host's (:mod:`agentcomm.host.agent`). Each request has its own future (no
re-queue loop), a deadline that travels in the envelope, and typed errors. The
public Runtime installs it as ``rt.requests``, so every pattern can call an agent
without importing this one.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from typing import TYPE_CHECKING, Any

import msgspec

from agentcomm.core.deadlines import check_seconds
from agentcomm.core.envelope import Envelope, encode_payload, new_id
from agentcomm.core.errors import (
    AgentCommError,
    ConfigurationError,
    MailboxFull,
    NoResponders,
    ValidationError,
)
from agentcomm.core.names import check_name
from agentcomm.core.progress import DEFAULT_WINDOW, MAX_WINDOW, WINDOW_HEADER, frame
from agentcomm.core.responses import raise_remote
from agentcomm.core.schema import codec_for
from agentcomm.direct.streams import ProgressCallback, Stream, on_progress_frame

if TYPE_CHECKING:
    from agentcomm.host.agent import Agent
    from agentcomm.host.runtime import Runtime
    from agentcomm.transports.channels import Channel

__all__ = ["DirectMessages"]

logger = logging.getLogger("agentcomm")
_json_decode = msgspec.json.Decoder().decode


class DirectMessages:
    """Sends notifications and requests as an agent; one per runtime (``rt.requests``).

    Example::

        answer = await rt.requests.request(agent, "calc", "add", {"a": 1, "b": 2})
    """

    __slots__ = ("_pending", "runtime")

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._pending: set[asyncio.Task[None]] = set()  # cancels on their way

    def _envelope(
        self,
        agent: Agent,
        kind: Any,
        to: str,
        handler: str,
        payload: Any,
        timeout: float | None,
        headers: dict[str, str] | None,
        cause: Envelope | None,
    ) -> Envelope:
        now = time.time()
        env = Envelope(
            id=new_id(),
            kind=kind,
            sender=agent.name,
            recipient=to,
            handler=handler,
            payload=encode_payload(payload),
            created=now,
            deadline=None if timeout is None else now + timeout,
            causation_id=None if cause is None else cause.id,
            traceparent=None if cause is None else cause.traceparent,
            headers=headers or {},
        )
        tracing = self.runtime.tracing
        if tracing is not None:  # the current span (ours) is the parent downstream
            tp, ts = tracing.current_traceparent()
            env = msgspec.structs.replace(env, traceparent=tp, tracestate=ts)
        return env

    async def send(
        self,
        agent: Agent,
        to: str,
        handler: str,
        payload: Any = None,
        *,
        block: bool = True,
        timeout: float | None = None,
        ttl: float | None = None,
        headers: dict[str, str] | None = None,
        cause: Envelope | None = None,
    ) -> None:
        """Fire-and-forget notification from ``agent`` to ``to``'s ``handler``.

        Raises :class:`NoResponders` at once if ``to`` is absent. With a full mailbox
        it waits for room, for at most ``timeout`` seconds (then :class:`MailboxFull`),
        or, with ``block=False``, raises :class:`MailboxFull` at once. ``ttl`` gives
        the notification a deadline: the receiver skips it, or stops its handler,
        once ``ttl`` seconds have passed.

        Example::

            await rt.requests.send(alice, "bob", "note", {"text": "hi"}, timeout=5, ttl=60)
        """
        rt = self.runtime
        if timeout is not None:
            timeout = check_seconds(timeout)
        if ttl is not None:
            ttl = check_seconds(ttl, "ttl")
        rt.authorize(agent.name, "send", f"{to}.{handler}")
        if rt.tracing is not None:
            attrs = {"agentcomm.sender": agent.name, "agentcomm.handler": handler}
            with rt.tracing.span("send", to, kind="producer", attributes=attrs):
                env = self._envelope(
                    agent, "notification", to, handler, payload, ttl, headers, cause
                )
                await self._send(agent, env, block, timeout)
            return
        env = self._envelope(agent, "notification", to, handler, payload, ttl, headers, cause)
        await self._send(agent, env, block, timeout)

    async def _send(self, agent: Agent, env: Envelope, block: bool, timeout: float | None) -> None:
        rt = self.runtime
        to = env.recipient or ""
        if rt.guard is not None:  # rate, limits and signature (docs/security.md)
            # a rate-limit wait never outlasts the caller's own bound on the send
            env = await rt.guard.hold(env, None if timeout is None else time.time() + timeout)
        rt.record(env)
        agent._sent += 1
        try:
            if timeout is None:
                await rt.transport.send(env, block=block)
                return
            async with asyncio.timeout(timeout):
                await rt.transport.send(env, block=block)
        except TimeoutError:
            raise MailboxFull(to, None, waited=timeout) from None
        except NoResponders:
            check_name("agent", to)  # a name no agent can have: say that instead
            raise

    async def request(
        self,
        agent: Agent,
        to: str,
        handler: str,
        payload: Any = None,
        *,
        timeout: float | None = None,
        returns: Any = None,
        headers: dict[str, str] | None = None,
        cause: Envelope | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> Any:
        """As ``agent``, call ``to``'s ``handler``; its answer, decoded as ``returns`` if given.

        Raises :class:`NoResponders` at once when ``to`` is absent,
        :class:`RequestTimeout` after ``timeout`` seconds (default: the runtime's),
        :class:`ValidationError` when the payload breaks the handler's schema, and
        :class:`RemoteError` when the handler raised. ``on_progress(Progress)`` is
        called for each ``ctx.progress(...)`` of the handler. Cancelling the calling
        task cancels the handler too (it sees ``CancelledError``).

        Example::

            total = await rt.requests.request(alice, "calc", "add", {"a": 1, "b": 2}, returns=int)
        """
        rt = self.runtime
        if rt.access is not None:
            rt.access(agent.name, "send", f"{to}.{handler}")
        if timeout is None:
            timeout = rt.default_timeout
        else:
            timeout = check_seconds(timeout)
        tracing = rt.tracing
        span = None
        if tracing is None:  # the untraced path passes a caller's trace context on as is
            tp = ts = None
            if cause is not None:
                tp, ts = cause.traceparent, cause.tracestate
        else:
            span = tracing.span(
                "request",
                to,
                kind="client",
                attributes={"agentcomm.sender": agent.name, "agentcomm.handler": handler},
            )
            span.__enter__()
            tp, ts = tracing.current_traceparent()
        channel = None
        try:
            if on_progress is not None:
                channel = await self._progress_channel(to, on_progress)
            now = time.time()
            env = Envelope(
                id=new_id(),
                kind="request",
                sender=agent.name,
                recipient=to,
                handler=handler,
                payload=encode_payload(payload),
                created=now,
                deadline=now + timeout,
                causation_id=None if cause is None else cause.id,
                traceparent=tp,
                tracestate=ts,
                headers=headers or {},
                reply_to=None if channel is None else channel.address,
            )
            if tracing is not None:
                tracing.describe_current(env)
            guard = rt.guard
            if guard is not None:  # rate, limits and signature (docs/security.md)
                env = await guard.hold(env) if guard.rated else guard.seal(env)
            rt.message_log.append(env)
            agent._requested += 1
            try:
                resp = await rt.transport.request(env, timeout)
            except asyncio.CancelledError:
                self.cancel_remote(agent.name, env)  # the handler stops too
                raise
            except NoResponders:
                check_name("agent", to)  # a name no agent can have: say that instead
                raise
            if guard is not None:
                guard.check_response(env, resp)
            if resp.error is not None:
                raise_remote(resp, env, timeout)
            if returns is None:
                # The payload came in a frame checked against the wire limits, or from a
                # handler in this process: no depth check, only typed errors.
                try:
                    return _json_decode(resp.payload)
                except (ValueError, RecursionError) as exc:  # msgspec's are ValueErrors
                    raise ValidationError(f"the answer is not valid JSON: {exc}") from None
            return codec_for(returns).decode(resp.payload)
        finally:
            if channel is not None:
                await channel.close()
            if span is not None:
                span.__exit__(*sys.exc_info())

    async def _progress_channel(self, to: str, callback: ProgressCallback) -> Channel:
        def on_frame(env: Envelope) -> None:
            if env.kind == "progress" and env.sender == to:
                on_progress_frame(env, callback)

        return await self.runtime.transport.open_channel(on_frame)

    def cancel_remote(self, sender: str, env: Envelope) -> None:
        """Ask ``env``'s recipient to cancel its handling of ``env`` (in the background).

        Example::

            rt.requests.cancel_remote("alice", request_envelope)
        """
        out = frame("cancel", env, sender)
        guard = self.runtime.guard
        if guard is not None:
            out = guard.seal(out)
        task = asyncio.get_running_loop().create_task(self._signal(out))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _signal(self, env: Envelope) -> None:
        try:
            await self.runtime.transport.signal(env)
        except AgentCommError as exc:
            logger.warning(
                "cancel of %s to %s not sent: %s", env.correlation_id, env.recipient, exc
            )

    async def stream(
        self,
        agent: Agent,
        to: str,
        handler: str,
        payload: Any = None,
        *,
        timeout: float | None = None,
        returns: Any = None,
        window: int = DEFAULT_WINDOW,
        on_progress: ProgressCallback | None = None,
        headers: dict[str, str] | None = None,
        cause: Envelope | None = None,
    ) -> Stream[Any]:
        """As ``agent``, open ``to``'s stream handler ``handler``; iterate the result.

        ``timeout`` bounds the whole stream (default: the runtime's); ``window`` is
        how many chunks the caller buffers (1..4096). Raises :class:`NoResponders`
        at once when ``to`` is absent.

        Example::

            async for part in await rt.requests.stream(alice, "writer", "draft", "tea"):
                print(part)
        """
        rt = self.runtime
        rt.authorize(agent.name, "send", f"{to}.{handler}")
        if not 1 <= window <= MAX_WINDOW:
            raise ConfigurationError(f"window must be 1..{MAX_WINDOW} chunks, got {window}")
        if timeout is None:
            timeout = rt.default_timeout
        else:
            timeout = check_seconds(timeout)
        headers = {**(headers or {}), WINDOW_HEADER: str(window)}
        env = self._envelope(agent, "stream", to, handler, payload, timeout, headers, cause)
        s: Stream[Any] = Stream(rt, agent.name, env, returns, window, on_progress, timeout)
        agent._requested += 1
        await s._open()
        return s
