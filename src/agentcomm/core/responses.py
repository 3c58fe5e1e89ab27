"""Error responses: how a failed request is reported, and the typed error it means.

Shared by the serving side (the host's workers, the boundary guard, proxy agents)
and the requesting side (direct messages), so both agree on one mapping of
``ErrorInfo.code`` to an exception class.
"""

from __future__ import annotations

from agentcomm.core.envelope import Envelope, ErrorInfo, new_id
from agentcomm.core.errors import (
    AuthenticationError,
    LimitExceeded,
    PermissionDenied,
    RemoteError,
    ReplayDetected,
    RequestTimeout,
    TransportError,
    UnknownHandler,
    ValidationError,
)

__all__ = ["error_response", "raise_remote"]


def error_response(
    env: Envelope,
    sender: str,
    code: str,
    exc_type: str,
    message: str,
    origin: str | None = None,
) -> Envelope:
    """The response envelope that reports a failed request.

    Example::

        resp = error_response(request, "calc", "error", "ZeroDivisionError", "division by zero")
    """
    return Envelope(
        id=new_id(),
        kind="response",
        sender=sender,
        recipient=env.sender,
        correlation_id=env.id,
        causation_id=env.id,
        traceparent=env.traceparent,
        error=ErrorInfo(code=code, type=exc_type, message=message, origin=origin),
    )


def raise_remote(resp: Envelope, request: Envelope, timeout: float) -> None:
    """Raise the typed error that an error response describes.

    Example::

        if resp.error is not None: raise_remote(resp, request, timeout=5.0)
    """
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
    raise RemoteError(resp.sender, err.type, err.message, err.origin)
