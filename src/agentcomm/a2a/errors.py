"""A2A errors <-> agentcomm's error tree, both ways, the remote text kept (needs the SDK).

=================================  =============================  ==============================
agentcomm (raised by the agent)    A2A error (code)               agentcomm (raised by a client)
=================================  =============================  ==============================
``UnknownTask``                    TaskNotFound (-32001)          ``UnknownTask``
``TaskFinished`` (on cancel)       TaskNotCancelable (-32002)     ``TaskFinished``
``UnknownHandler``, not-a-task     UnsupportedOperation (-32004)  ``UnsupportedOperation``
``ValidationError``                InvalidParams (-32602)         ``ValidationError``
``PermissionDenied``               InvalidRequest (-32600)        ``PermissionDenied``
                                   + ``reason=PERMISSION_DENIED``
anything else (``RemoteError``)    InternalError (-32603)         ``RemoteError``
=================================  =============================  ==============================

Example::

    raise to_a2a(exc)             # in the request handler
    raise from_a2a(err, url)      # in the proxy agent
"""

from __future__ import annotations

from a2a.utils import errors as a2a_errors

from agentcomm.core.errors import (
    AgentCommError,
    PermissionDenied,
    RemoteError,
    RequestTimeout,
    UnknownHandler,
    ValidationError,
)
from agentcomm.core.task_errors import InvalidTransition, TaskFinished, UnknownTask

__all__ = ["A2AProtocolError", "UnsupportedOperation", "from_a2a", "to_a2a"]

_PERMISSION = "PERMISSION_DENIED"


class UnsupportedOperation(UnknownHandler):
    """The remote A2A agent does not support the operation (A2A code -32004).

    Example::

        except UnsupportedOperation as exc: print(exc)
    """


class A2AProtocolError(RemoteError):
    """An A2A error with no closer match in the tree; ``code`` is its JSON-RPC code.

    Example::

        except A2AProtocolError as exc: print(exc.code, exc.message)
    """

    def __init__(self, source: str, code: int | None, type: str, message: str) -> None:
        super().__init__(source, type, message)
        self.code = code


def to_a2a(exc: BaseException, *, cancel: bool = False) -> a2a_errors.A2AError:
    """The A2A error a client should see for ``exc`` raised while serving a call.

    ``cancel`` says the call was a cancel (a finished task is then not cancelable).

    Example::

        try: ...
        except AgentCommError as exc: raise to_a2a(exc) from exc
    """
    if isinstance(exc, a2a_errors.A2AError):
        return exc
    text = str(exc)
    if isinstance(exc, UnknownTask):
        return a2a_errors.TaskNotFoundError(text, data={"task_id": exc.task_id})
    if isinstance(exc, TaskFinished) and cancel:
        return a2a_errors.TaskNotCancelableError(text, data={"state": exc.state})
    if isinstance(exc, InvalidTransition | UnknownHandler):
        return a2a_errors.UnsupportedOperationError(text)
    if isinstance(exc, ValidationError):
        return a2a_errors.InvalidParamsError(text)
    if isinstance(exc, PermissionDenied):
        data = {"reason": _PERMISSION}
        if exc.rule:
            data["rule"] = exc.rule
        return a2a_errors.InvalidRequestError(f"permission denied: {text}", data=data)
    if isinstance(exc, RequestTimeout):
        return a2a_errors.InternalError(f"timed out: {text}")
    if isinstance(exc, AgentCommError):
        return a2a_errors.InternalError(text)
    return a2a_errors.InternalError(f"{type(exc).__name__}: {text}")


def _code(err: a2a_errors.A2AError) -> int | None:
    return a2a_errors.JSON_RPC_ERROR_CODE_MAP.get(type(err))


def from_a2a(err: BaseException, source: str, *, task_id: str = "") -> AgentCommError:
    """The agentcomm error for an A2A error a remote agent (``source``) answered with.

    Example::

        except A2AError as err: raise from_a2a(err, url) from err
    """
    if isinstance(err, AgentCommError):
        return err
    message = getattr(err, "message", None) or str(err)
    data = getattr(err, "data", None) or {}
    if isinstance(err, a2a_errors.TaskNotFoundError):
        out: AgentCommError = UnknownTask(str(data.get("task_id", task_id)))
        out.args = (f"{source}: {message}",)
        return out
    if isinstance(err, a2a_errors.TaskNotCancelableError):
        return TaskFinished(task_id, str(data.get("state", "terminal")), f"{source}: {message}")
    if isinstance(err, a2a_errors.UnsupportedOperationError | a2a_errors.MethodNotFoundError):
        return UnsupportedOperation(f"{source}: {message}")
    if isinstance(err, a2a_errors.InvalidParamsError | a2a_errors.ContentTypeNotSupportedError):
        return ValidationError(f"{source}: {message}")
    if isinstance(err, a2a_errors.InvalidRequestError) and data.get("reason") == _PERMISSION:
        return PermissionDenied(f"{source}: {message}", rule=data.get("rule"))
    if "HTTP Error 401" in message or "HTTP Error 403" in message:  # the transport refused
        return PermissionDenied(f"{source}: the agent refused our credentials ({message})")
    code = _code(err) if isinstance(err, a2a_errors.A2AError) else None
    return A2AProtocolError(source, code, type(err).__name__, message)
