"""How nats-py exceptions map onto agentcomm's error tree (shared by the NATS modules)."""

from __future__ import annotations

import asyncio

import nats.errors
import nats.js.errors

from agentcomm.core.errors import (
    AgentCommError,
    ConfigurationError,
    LimitExceeded,
    TransportClosed,
    TransportError,
)

__all__ = ["NATS_ERRORS", "honour_cancellation", "js_error", "nats_error"]

#: The exceptions a nats-py call may raise for engine reasons.
NATS_ERRORS = (nats.errors.Error, OSError)

_STREAM_NOT_FOUND = 10059
#: "replicas > 1 not supported in non-clustered mode", "insufficient resources",
#: "no suitable peers for placement".
_TOO_FEW_SERVERS = frozenset({10074, 10023, 10005})


def nats_error(exc: BaseException, what: str) -> AgentCommError:
    """Translate a nats-py exception into the agentcomm error tree.

    Example::

        except nats.errors.Error as exc:
            raise nats_error(exc, "publish to orders") from exc
    """
    if isinstance(exc, nats.errors.MaxPayloadError):
        return LimitExceeded(
            f"{what}: over the NATS server's max_payload ({exc}); send a reference (a "
            "blackboard key, a URL) instead of the data",
            limit="max_payload",
        )
    if isinstance(exc, nats.errors.ConnectionClosedError):
        return TransportClosed(f"{what}: the NATS connection is closed")
    if isinstance(exc, nats.errors.OutboundBufferLimitError):
        return TransportError(
            f"{what}: the NATS connection is down and its outgoing buffer is full; "
            "the broker is unreachable, retry once it is back"
        )
    if isinstance(exc, nats.errors.ConnectionReconnectingError):
        return TransportError(f"{what}: the NATS connection is reconnecting; retry shortly")
    return TransportError(f"{what} failed on NATS: {type(exc).__name__}: {exc}")


def js_error(exc: BaseException, what: str) -> AgentCommError:
    """Translate a JetStream (or nats-py) exception into the agentcomm error tree.

    Example::

        except nats.errors.Error as exc:
            raise js_error(exc, "append to EVENTS") from exc
    """
    if isinstance(exc, nats.js.errors.NoStreamResponseError):
        # No stream took the message: it may be missing, but JetStream also answers
        # so while it recovers after a broker restart. A caller that knows the stream
        # is missing (it asked the stream's info) raises ConfigurationError instead.
        return TransportError(
            f"{what}: JetStream stored nothing (no stream answered); it may be starting "
            "after a broker restart (retry shortly), or the stream was never created"
        )
    if isinstance(exc, nats.js.errors.APIError) and exc.err_code == _STREAM_NOT_FOUND:
        return ConfigurationError(f"{what}: no such stream; create it first")
    if isinstance(exc, nats.errors.TimeoutError):
        return TransportError(
            f"{what}: JetStream did not answer in time; is the NATS server up and started with -js?"
        )
    if isinstance(exc, nats.js.errors.APIError) and exc.err_code in _TOO_FEW_SERVERS:
        return ConfigurationError(
            f"{what}: JetStream cannot place that many replicas ({exc.description}); "
            "ask for at most as many as the cluster has servers with JetStream "
            "(NatsTransport(replicas=...), agentcomm nats setup --replicas N)"
        )
    if isinstance(exc, nats.js.errors.APIError):
        return TransportError(f"{what}: JetStream refused: {exc.description} ({exc.err_code})")
    return nats_error(exc, what)


def honour_cancellation() -> None:
    """Re-raise a cancellation that nats-py's ``asyncio.wait_for`` swallowed.

    On Python 3.11, ``wait_for`` returns the result instead of raising when the
    reply and a ``cancel()`` arrive together; the task then carries on as if it
    had not been cancelled (a cancelled sender loop would keep sending).
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
