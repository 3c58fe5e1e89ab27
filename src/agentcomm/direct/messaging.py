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
import sys
import time
from typing import TYPE_CHECKING, Any

import msgspec

from agentcomm.core.envelope import Envelope, encode_payload, new_id
from agentcomm.core.errors import MailboxFull, ValidationError
from agentcomm.core.responses import raise_remote
from agentcomm.core.schema import codec_for

if TYPE_CHECKING:
    from agentcomm.host.agent import Agent
    from agentcomm.host.runtime import Runtime

__all__ = ["DirectMessages"]

_json_decode = msgspec.json.Decoder().decode


class DirectMessages:
    """Sends notifications and requests as an agent; one per runtime (``rt.requests``).

    Example::

        answer = await rt.requests.request(agent, "calc", "add", {"a": 1, "b": 2})
    """

    __slots__ = ("runtime",)

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

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
        if timeout is None:
            await rt.transport.send(env, block=block)
            return
        try:
            async with asyncio.timeout(timeout):
                await rt.transport.send(env, block=block)
        except TimeoutError:
            raise MailboxFull(to, None, waited=timeout) from None

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
    ) -> Any:
        """As ``agent``, call ``to``'s ``handler``; its answer, decoded as ``returns`` if given.

        Raises :class:`NoResponders` at once when ``to`` is absent,
        :class:`RequestTimeout` after ``timeout`` seconds (default: the runtime's),
        :class:`ValidationError` when the payload breaks the handler's schema, and
        :class:`RemoteError` when the handler raised.

        Example::

            total = await rt.requests.request(alice, "calc", "add", {"a": 1, "b": 2}, returns=int)
        """
        rt = self.runtime
        if rt.access is not None:
            rt.access(agent.name, "send", f"{to}.{handler}")
        if timeout is None:
            timeout = rt.default_timeout
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
        try:
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
            )
            if tracing is not None:
                tracing.describe_current(env)
            guard = rt.guard
            if guard is not None:  # rate, limits and signature (docs/security.md)
                env = await guard.hold(env)
            rt.message_log.append(env)
            agent._requested += 1
            resp = await rt.transport.request(env, timeout)
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
            if span is not None:
                span.__exit__(*sys.exc_info())
