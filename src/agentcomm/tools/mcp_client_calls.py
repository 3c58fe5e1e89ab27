"""Calling a connected MCP server's tools (internal; the :class:`ToolCalls` half of
:class:`~agentcomm.tools.mcp_client.MCPConnection`).

Results: the structured content (unwrapped from ``{"result": ...}``), else the
content as agentcomm types; the SDK's failures become agentcomm's typed errors.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio
import mcp_types as mt
from mcp.shared.exceptions import MCPError

from agentcomm.core.errors import (
    AgentCommError,
    RequestTimeout,
    TransportError,
    UnknownHandler,
    ValidationError,
)
from agentcomm.tools.mcp_content import from_block
from agentcomm.tools.mcp_handlers import SchemaCodec
from agentcomm.tools.schemas import ToolError

if TYPE_CHECKING:
    from mcp import Client

    from agentcomm.host.runtime import Runtime

__all__ = ["ToolCalls", "reason_of"]


def _is_wrapper(schema: dict[str, Any] | None) -> bool:
    if not schema:
        return False
    props = schema.get("properties")
    wrapped = isinstance(props, dict) and list(props) == ["result"]
    return wrapped and schema.get("required") == ["result"]


class ToolCalls:
    """``call_tool`` and what it needs (mixed into MCPConnection)."""

    name: str
    timeout: float
    skipped: dict[str, str]
    _rt: Runtime
    _client: Client | None
    _tools: dict[str, mt.Tool]
    _codecs: dict[str, SchemaCodec]
    _lost: str | None
    _stop: asyncio.Event

    # -- calls -----------------------------------------------------------------------
    async def call_tool(
        self,
        tool: str,
        arguments: dict[str, Any] | None = None,
        *,
        timeout: float | None = None,
        on_progress: Callable[[float, float | None, str | None], Any] | None = None,
    ) -> Any:
        """Call a tool; returns its structured result, else its content.

        Content is a ``str`` for one text block, an :class:`Image`, :class:`Audio` or
        :class:`Resource` for one such block, else the list of them.
        ``on_progress(done, total, message)`` (sync or async) hears the server's
        progress notifications.

        Raises :class:`UnknownHandler` for a tool the server does not have,
        :class:`ValidationError` for arguments its schema refuses, :class:`ToolError`
        when the tool reports a failure, :class:`RequestTimeout` after ``timeout``
        (default: the connection's) and :class:`TransportError` when the server is gone.

        Example::

            text = await conn.call_tool("echo", {"message": "hi"})
        """
        codec = self._codecs.get(tool)
        if codec is not None:
            codec.check(arguments or {})
        progress = None
        if on_progress is not None:
            callback = on_progress

            async def progress(done: float, total: float | None, message: str | None) -> None:
                got = callback(done, total, message)
                if asyncio.iscoroutine(got):
                    await got

        return await self._call(tool, arguments, timeout, progress)

    async def _call(
        self,
        tool: str,
        arguments: dict[str, Any] | None,
        timeout: float | None,
        progress: Any = None,
    ) -> Any:
        client = self._client
        if client is None:
            why = f": {self._lost}" if self._lost else ""
            raise TransportError(f"MCP server {self.name!r} is not connected{why}")
        desc = self._tools.get(tool)
        if desc is None and tool in self.skipped:
            raise UnknownHandler(f"MCP server {self.name!r}: {tool!r} {self.skipped[tool]}")
        if desc is None:
            raise UnknownHandler(
                f"MCP server {self.name!r} has no tool {tool!r}; it has {sorted(self._tools)}"
            )
        limit = self.timeout if timeout is None else timeout
        if limit <= 0:
            raise RequestTimeout(self.name, tool, 0.0)
        tracing = self._rt.tracing
        if tracing is not None:  # a "call <tool>" span; its context travels in _meta
            attrs = {"agentcomm.mcp.server": self.name, "agentcomm.mcp.tool": tool}
            with tracing.span("call", tool, kind="client", attributes=attrs):
                tp, ts = tracing.current_traceparent()
                meta: dict[str, Any] = {"traceparent": tp}
                if ts:
                    meta["tracestate"] = ts
                return await self._send_call(client, desc, tool, arguments, limit, meta, progress)
        return await self._send_call(client, desc, tool, arguments, limit, None, progress)

    async def _send_call(
        self,
        client: Client,
        desc: Any,
        tool: str,
        arguments: dict[str, Any] | None,
        limit: float,
        meta: dict[str, Any] | None,
        progress: Any,
    ) -> Any:
        try:
            async with asyncio.timeout(limit):
                result = await client.call_tool(
                    tool,
                    arguments or {},
                    read_timeout_seconds=limit,
                    progress_callback=progress,
                    meta=meta,  # type: ignore[arg-type]
                )
        except TimeoutError:
            raise RequestTimeout(self.name, tool, limit) from None
        except MCPError as exc:
            raise self._mcp_error(tool, exc) from None
        except AgentCommError:
            raise
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, OSError) as exc:
            self._lost = reason_of(exc)
            self._stop.set()
            raise TransportError(f"MCP server {self.name!r} is gone: {self._lost}") from None
        except Exception as exc:  # a result the SDK could not validate, etc.
            raise ToolError(self.name, f"{type(exc).__name__}: {exc}") from None
        if result.is_error:
            text = "; ".join(str(from_block(b)) for b in result.content) or "tool failed"
            raise ToolError(self.name, text)
        if result.structured_content is not None:
            data = result.structured_content
            if _is_wrapper(desc.output_schema) and list(data) == ["result"]:
                return data["result"]
            return data
        if len(result.content) == 1:
            return from_block(result.content[0])
        return [from_block(b) for b in result.content]

    def _mcp_error(self, tool: str, exc: MCPError) -> AgentCommError:
        msg = exc.message
        if exc.code == mt.CONNECTION_CLOSED:
            self._lost = msg
            self._stop.set()
            return TransportError(f"MCP server {self.name!r} is gone: {msg}")
        if exc.code == mt.REQUEST_TIMEOUT:
            return RequestTimeout(self.name, tool, self.timeout)
        if exc.code in (mt.INVALID_PARAMS, mt.METHOD_NOT_FOUND):
            if "unknown tool" in msg.lower() or "not found" in msg.lower():
                return UnknownHandler(f"MCP server {self.name!r}: {msg}")
            return ValidationError(f"MCP server {self.name!r} refused the arguments: {msg}")
        return ToolError(self.name, f"MCP error {exc.code}: {msg}")


def reason_of(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(reason_of(e) for e in exc.exceptions)
    if isinstance(exc, MCPError):
        return exc.message
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
