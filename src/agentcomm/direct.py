"""Direct messages: ``send`` (a notification) and ``request`` (request/response).

:class:`DirectMessaging` is the talking half of :class:`~agentcomm.agent.Agent`; the
serving half (mailbox, workers, handlers) lives in :mod:`agentcomm.agent`. Each
request has its own future (no re-queue loop), a deadline that travels in the
envelope, and typed errors.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import TYPE_CHECKING, Any, TypeVar, overload

import msgspec

from .envelope import Envelope, ErrorInfo, encode_payload, new_id
from .errors import (
    AuthenticationError,
    LimitExceeded,
    MailboxFull,
    PermissionDenied,
    RemoteError,
    ReplayDetected,
    RequestTimeout,
    TransportError,
    UnknownHandler,
    ValidationError,
)
from .limits import MAX_WIRE_DEPTH
from .schema import codec_for

if TYPE_CHECKING:
    from .runtime import Runtime

__all__ = ["DirectMessaging", "error_response", "raise_remote"]

T = TypeVar("T")

_json_decode = msgspec.json.Decoder().decode


def error_response(env: Envelope, sender: str, code: str, exc_type: str, message: str) -> Envelope:
    """The response envelope that reports a failed request."""
    return Envelope(
        id=new_id(),
        kind="response",
        sender=sender,
        recipient=env.sender,
        correlation_id=env.id,
        causation_id=env.id,
        traceparent=env.traceparent,
        error=ErrorInfo(code=code, type=exc_type, message=message),
    )


def raise_remote(resp: Envelope, request: Envelope, timeout: float) -> None:
    """Raise the typed error that an error response describes."""
    err = resp.error
    assert err is not None
    if err.code == "timeout":
        raise RequestTimeout(request.recipient or resp.sender, request.handler, timeout)
    if err.code == "validation":
        raise ValidationError(f"{resp.sender} refused the payload: {err.message}")
    if err.code == "unknown_handler":
        raise UnknownHandler(err.message)
    if err.code == "permission":
        raise PermissionDenied(err.message)
    if err.code == "transport":
        raise TransportError(f"{resp.sender}: {err.message}")
    if err.code == "limit":
        raise LimitExceeded(f"{resp.sender} refused the message: {err.message}")
    if err.code == "authentication":
        cls = ReplayDetected if err.type == "ReplayDetected" else AuthenticationError
        raise cls(f"{resp.sender} refused the message: {err.message}")
    raise RemoteError(resp.sender, err.type, err.message)


class DirectMessaging:
    """The talking half of an agent: :meth:`send` and :meth:`request`.

    Example::

        answer = await agent.request("calc", "add", {"a": 1, "b": 2})
    """

    name: str
    _runtime: Runtime | None
    _sent: int
    _requested: int

    @property
    def runtime(self) -> Runtime:  # overridden by Agent
        raise NotImplementedError

    def _envelope(
        self,
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
            sender=self.name,
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
        """Fire-and-forget notification to ``to``'s ``handler``.

        Raises :class:`NoResponders` at once if ``to`` is absent. With a full mailbox
        it waits for room, for at most ``timeout`` seconds (then :class:`MailboxFull`),
        or, with ``block=False``, raises :class:`MailboxFull` at once. ``ttl`` gives
        the notification a deadline: the receiver skips it, or stops its handler,
        once ``ttl`` seconds have passed.

        Example::

            await alice.send("bob", "note", {"text": "build finished"}, timeout=5, ttl=60)
        """
        rt = self.runtime
        rt._authorize(self.name, "send", f"{to}.{handler}")
        if rt.tracing is not None:
            attrs = {"agentcomm.sender": self.name, "agentcomm.handler": handler}
            with rt.tracing.span("send", to, kind="producer", attributes=attrs):
                env = self._envelope("notification", to, handler, payload, ttl, headers, cause)
                await self._send(rt, env, block, timeout)
            return
        env = self._envelope("notification", to, handler, payload, ttl, headers, cause)
        await self._send(rt, env, block, timeout)

    async def _send(self, rt: Runtime, env: Envelope, block: bool, timeout: float | None) -> None:
        to = env.recipient or ""
        if rt._guard is not None:  # rate, limits and signature (docs/security.md)
            # a rate-limit wait never outlasts the caller's own bound on the send
            env = await rt._guard.hold(env, None if timeout is None else time.time() + timeout)
        rt._record(env)
        self._sent += 1
        if timeout is None:
            await rt.transport.send(env, block=block)
            return
        try:
            async with asyncio.timeout(timeout):
                await rt.transport.send(env, block=block)
        except TimeoutError:
            raise MailboxFull(to, None, waited=timeout) from None

    @overload
    async def request(
        self,
        to: str,
        handler: str,
        payload: Any = None,
        *,
        timeout: float | None = None,
        returns: None = None,
        headers: dict[str, str] | None = None,
        cause: Envelope | None = None,
    ) -> Any: ...

    @overload
    async def request(
        self,
        to: str,
        handler: str,
        payload: Any = None,
        *,
        timeout: float | None = None,
        returns: type[T],
        headers: dict[str, str] | None = None,
        cause: Envelope | None = None,
    ) -> T: ...

    async def request(
        self,
        to: str,
        handler: str,
        payload: Any = None,
        *,
        timeout: float | None = None,
        returns: Any = None,
        headers: dict[str, str] | None = None,
        cause: Envelope | None = None,
    ) -> Any:
        """Call ``to``'s ``handler`` and return its answer (decoded as ``returns`` if given).

        Raises :class:`NoResponders` at once when ``to`` is absent,
        :class:`RequestTimeout` after ``timeout`` seconds (default: the runtime's),
        :class:`ValidationError` when the payload breaks the handler's schema, and
        :class:`RemoteError` when the handler raised.

        Example::

            total = await alice.request("calc", "add", {"a": 1, "b": 2}, returns=int)
        """
        rt = self._runtime
        if rt is None:
            rt = self.runtime  # raises TransportClosed with advice
        if rt.access is not None:
            rt.access(self.name, "send", f"{to}.{handler}")
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
                attributes={"agentcomm.sender": self.name, "agentcomm.handler": handler},
            )
            span.__enter__()
            tp, ts = tracing.current_traceparent()
        try:
            now = time.time()
            env = Envelope(
                id=new_id(),
                kind="request",
                sender=self.name,
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
            guard = rt._guard
            if guard is not None:  # rate, limits and signature (docs/security.md)
                env = await guard.hold(env)
            rt.message_log.append(env)
            self._requested += 1
            resp = await rt.transport.request(env, timeout)
            if guard is not None:
                guard.check_response(env, resp)
            if resp.error is not None:
                raise_remote(resp, env, timeout)
            if returns is None:
                payload = resp.payload
                if len(payload) <= MAX_WIRE_DEPTH:  # cannot nest too deep: decode at once
                    try:
                        return _json_decode(payload)
                    except msgspec.DecodeError:
                        pass
                returns = Any  # guarded: hostile payloads raise ValidationError only
            return codec_for(returns).decode(resp.payload)
        finally:
            if span is not None:
                span.__exit__(*sys.exc_info())
