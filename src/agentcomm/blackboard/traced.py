"""Board writes inside a ``"write <key>"`` span (docs/tracing.md), internal.

A traced write runs its own untraced body inside the span; :data:`_in_span` is set
meanwhile so the body does not open a second one.
"""

from __future__ import annotations

from collections.abc import Awaitable
from contextvars import ContextVar
from typing import Any, TypeVar

from agentcomm.blackboard.core import Entry, _Core

__all__ = ["in_write_span"]

T = TypeVar("T")

# Set while a traced write runs its untraced body (see Blackboard._traced).
_in_span: ContextVar[bool] = ContextVar("agentcomm_board_span", default=False)


async def in_write_span(
    core: _Core, author: str, cause: str | None, operation: str, key: str, call: Awaitable[T]
) -> T:
    """Await ``call`` (a write's body) in a ``"write <key>"`` span with the revision."""
    tracing = core.rt.tracing
    assert tracing is not None
    attrs = {
        "agentcomm.board.operation": operation,
        "agentcomm.board.bucket": core.bucket,
        "agentcomm.author": author,
        "agentcomm.causation_id": cause,
    }
    token = _in_span.set(True)
    try:
        with tracing.span("write", key, kind="producer", attributes=attrs) as span:
            result = await call
            rev: Any = result.revision if isinstance(result, Entry) else result
            span.set_attribute("agentcomm.revision", rev)
            return result
    finally:
        _in_span.reset(token)
