"""Consuming MCP servers: a long-lived client session and a proxy agent (imported lazily).

Made by :meth:`agentcomm.tools.Tools.connect`. The session lives in one task of the
runtime's task group; the proxy agent's handlers forward to it, so
``agent.request(server_name, tool, arguments)`` reaches the MCP tool.

Example::

    conn = await rt.tools.connect("everything", command=["npx", "-y",
                                  "@modelcontextprotocol/server-everything"])
    print(conn.tool_names())
    print(await conn.call_tool("echo", {"message": "hi"}))
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel
import mcp_types as mt
from mcp import Client, StdioServerParameters
from mcp.shared.exceptions import MCPError
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from agentcomm.core.errors import (
    AgentCommError,
    RequestTimeout,
    TransportError,
    UnknownHandler,
    ValidationError,
)
from agentcomm.core.names import check_name
from agentcomm.core.schema import HandlerSpec
from agentcomm.host.agent import Agent
from agentcomm.host.context import Context
from agentcomm.tools.mcp_handlers import SchemaCodec, handler_name, proxy_spec
from agentcomm.tools.schemas import ToolError, ToolInfo, llm_tool_name

if TYPE_CHECKING:
    from agentcomm.host.runtime import Runtime

__all__ = ["MCPConnection"]

logger = logging.getLogger("agentcomm.mcp")

_GRACE = 0.25  # seconds an MCP call may outlive its caller's deadline


def _is_wrapper(schema: dict[str, Any] | None) -> bool:
    if not schema:
        return False
    props = schema.get("properties")
    wrapped = isinstance(props, dict) and list(props) == ["result"]
    return wrapped and schema.get("required") == ["result"]


def _content_value(block: mt.ContentBlock) -> Any:
    if isinstance(block, mt.TextContent):
        return block.text
    return block.model_dump(mode="json", by_alias=True, exclude_none=True)


class MCPConnection:
    """A live connection to one MCP server, and the proxy agent serving its tools.

    Example::

        conn = await rt.tools.connect("calc", url="http://127.0.0.1:8000/mcp")
        assert await conn.call_tool("add", {"a": 1, "b": 2}) == 3
    """

    def __init__(
        self,
        runtime: Runtime,
        name: str,
        *,
        on_gone: Callable[[str], None],
        command: list[str] | None,
        url: str | None,
        env: dict[str, str] | None,
        cwd: str | None,
        timeout: float,
        mode: str = "auto",
    ) -> None:
        self.name = check_name("agent", name)
        self.timeout = timeout
        self._rt = runtime
        self._on_gone = on_gone
        self._command = command
        self._url = url
        self._env = env
        self._cwd = cwd
        self._mode = mode
        self._client: Client | None = None
        self._tools: dict[str, mt.Tool] = {}
        self._codecs: dict[str, SchemaCodec] = {}
        self._handler_of: dict[str, str] = {}  # MCP tool name -> handler name
        self._stop = asyncio.Event()
        self._done = asyncio.Event()
        self._refresh_wanted = asyncio.Event()
        self._lost: str | None = None
        self.agent: Agent | None = None

    def __repr__(self) -> str:
        target = self._url or " ".join(self._command or [])
        return f"<MCPConnection {self.name!r} to {target!r} tools={sorted(self._tools)}>"

    @property
    def connected(self) -> bool:
        """True while the session is up."""
        return self._client is not None

    def tool_names(self) -> list[str]:
        """The server's tool names (as the server spells them).

        Example::

            assert "echo" in conn.tool_names()
        """
        return sorted(self._tools)

    def tool_infos(self) -> list[ToolInfo]:
        """Catalogue entries of this server's tools.

        Example::

            for t in conn.tool_infos(): print(t.name, t.input_schema)
        """
        out = []
        for tname in sorted(self._tools):
            tool = self._tools[tname]
            hname = self._handler_of[tname]
            out.append(
                ToolInfo(
                    name=tname,
                    agent=self.name,
                    handler=hname,
                    llm_name=llm_tool_name(self.name, hname),
                    description=tool.description or "",
                    input_schema=dict(tool.input_schema),
                    output_schema=dict(tool.output_schema) if tool.output_schema else None,
                    source="mcp",
                    server=self.name,
                )
            )
        return out

    # -- lifecycle -----------------------------------------------------------------
    def _target(self) -> Any:
        if self._url is not None:
            return self._url
        assert self._command is not None
        return StdioServerParameters(
            command=self._command[0], args=self._command[1:], env=self._env, cwd=self._cwd
        )

    async def _start(self, connect_timeout: float) -> None:
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        # Whoever stops waiting first, its outcome is read, so asyncio never reports a
        # "Future exception was never retrieved".
        ready.add_done_callback(_retrieve)
        task = self._rt.task_group.create_task(
            self._run(ready), name=f"agentcomm:mcp-client:{self.name}"
        )
        try:
            async with asyncio.timeout(connect_timeout):
                await asyncio.shield(ready)
        except TimeoutError:
            # The session may be stuck in its handshake, which only its own (longer)
            # read timeout would end: cancel it. Its clean-up (ending a server process
            # takes the SDK up to a few seconds) goes on in the runtime's task group.
            self._stop.set()
            task.cancel()
            raise TransportError(
                f"MCP server {self.name!r} did not answer within {connect_timeout:g}s; "
                "check the command or URL, or raise connect_timeout"
            ) from None
        except BaseException:
            self._stop.set()
            raise
        try:
            agent = Agent(self.name, concurrency=16, mailbox_size=256, description=f"MCP {self!r}")
            agent.proxy = True  # a server gone reaches callers as TransportError
            self._install(agent)
            self.agent = await self._rt.attach(agent)
        except BaseException:
            self._stop.set()
            await self._done.wait()
            raise

    async def _run(self, ready: asyncio.Future[None]) -> None:
        """Own the client session for its whole life (a task in the runtime's group)."""
        try:
            client = Client(
                self._target(),
                mode=self._mode,
                read_timeout_seconds=self.timeout,
                message_handler=self._on_message,
                client_info=mt.Implementation(name="agentcomm", version=_version()),
            )
            async with client, asyncio.TaskGroup() as tg:
                self._client = client
                listener = None
                if client.protocol_version in MODERN_PROTOCOL_VERSIONS:
                    # 2026-07-28 servers announce changes on a subscriptions/listen
                    # stream; handshake-era servers send notifications (_on_message).
                    # Listen first, then list, so no change falls in between.
                    acked = asyncio.Event()
                    listener = tg.create_task(self._listen(client, acked))
                    async with asyncio.timeout(self.timeout):
                        await acked.wait()
                try:
                    await self._fetch_tools(client)
                    if not ready.done():
                        ready.set_result(None)
                    await self._serve_changes(client)
                finally:
                    if listener is not None:
                        listener.cancel()
        except Exception as exc:
            reason = _reason(exc)
            if not ready.done():
                ready.set_exception(
                    TransportError(f"cannot connect to MCP server {self.name!r}: {reason}")
                )
            else:
                self._lost = reason
                logger.warning("MCP server %s: connection lost: %s", self.name, reason)
        finally:
            self._client = None
            if not ready.done():
                ready.set_exception(TransportError(f"MCP server {self.name!r} closed"))
            try:
                if self._lost is not None and self.agent is not None and self._rt.running:
                    # Calls now fail fast with NoResponders instead of reaching a dead session.
                    agent, self.agent = self.agent, None
                    self._on_gone(self.name)
                    with contextlib.suppress(Exception):
                        await self._rt.detach(agent)
            finally:
                self._done.set()

    async def wait_closed(self) -> None:
        """Wait until the session has ended (closed by us, or the server went away).

        Example::

            async with asyncio.timeout(5):
                await conn.wait_closed()
        """
        await self._done.wait()

    async def _serve_changes(self, client: Client) -> None:
        while not self._stop.is_set():
            stop = asyncio.ensure_future(self._stop.wait())
            refresh = asyncio.ensure_future(self._refresh_wanted.wait())
            try:
                await asyncio.wait((stop, refresh), return_when=asyncio.FIRST_COMPLETED)
            finally:
                stop.cancel()
                refresh.cancel()
            if self._refresh_wanted.is_set() and not self._stop.is_set():
                self._refresh_wanted.clear()
                await self._fetch_tools(client)
                if self.agent is not None:
                    self._install(self.agent)

    async def _listen(self, client: Client, acked: asyncio.Event) -> None:
        try:
            async with client.listen(tools_list_changed=True) as sub:
                acked.set()
                async for _event in sub:
                    self._refresh_wanted.set()
        except Exception as exc:  # the server may not serve subscriptions/listen
            logger.debug("MCP server %s: no tool-list change stream: %s", self.name, exc)
        finally:
            acked.set()

    async def _on_message(self, message: Any) -> None:
        if isinstance(message, mt.ToolListChangedNotification):
            self._refresh_wanted.set()
        await anyio.lowlevel.checkpoint()

    async def _fetch_tools(self, client: Client) -> None:
        tools: dict[str, mt.Tool] = {}
        cursor: str | None = None
        for _ in range(100):  # bounded pagination
            page = await client.list_tools(cursor=cursor, cache_mode="bypass")
            for t in page.tools:
                tools[t.name] = t
            cursor = page.next_cursor
            if cursor is None:
                break
        self._codecs = {
            name: SchemaCodec(dict(t.input_schema), f"{self.name}.{name} arguments")
            for name, t in tools.items()
        }
        self._tools = tools

    def _install(self, agent: Agent) -> None:
        """Make the agent's handlers mirror the server's tools."""
        handler_of: dict[str, str] = {}
        taken: set[str] = set()
        specs: dict[str, HandlerSpec] = {}
        for tname, tool in self._tools.items():
            hname = handler_name(tname, taken)
            taken.add(hname)
            handler_of[tname] = hname
            codec = self._codecs[tname]
            specs[hname] = proxy_spec(
                hname,
                self._forwarder(tname),
                codec,
                (tool.description or "").split("\n\n")[0].strip(),
            )
        self._handler_of = handler_of
        if agent.handlers != specs:
            agent.handlers.clear()
            agent.handlers.update(specs)
            agent._mcp_names = {h: True for h in specs}
            agent._changed()

    def _forwarder(self, tool: str) -> Callable[..., Coroutine[Any, Any, Any]]:
        async def forward(arguments: dict[str, Any], ctx: Context) -> Any:
            ctx.runtime.authorize(ctx.sender, "call", f"{self.name}.{tool}")
            left = ctx.remaining()
            # A little past the caller's deadline: the caller then times out on its
            # own (RequestTimeout) instead of receiving our timeout as a RemoteError.
            return await self._call(tool, arguments, None if left is None else left + _GRACE)

        return forward

    async def aclose(self) -> None:
        """Close the session and detach the proxy agent.

        Example::

            await conn.aclose()
        """
        self._stop.set()
        await self._done.wait()
        agent, self.agent = self.agent, None
        if agent is not None and agent.name in self._rt.agents:
            await self._rt.detach(agent)

    # -- calls -----------------------------------------------------------------------
    async def call_tool(
        self, tool: str, arguments: dict[str, Any] | None = None, *, timeout: float | None = None
    ) -> Any:
        """Call a tool; returns its structured result, else its text (or content list).

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
        return await self._call(tool, arguments, timeout)

    async def _call(
        self, tool: str, arguments: dict[str, Any] | None, timeout: float | None
    ) -> Any:
        client = self._client
        if client is None:
            why = f": {self._lost}" if self._lost else ""
            raise TransportError(f"MCP server {self.name!r} is not connected{why}")
        desc = self._tools.get(tool)
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
                return await self._send_call(client, desc, tool, arguments, limit, meta)
        return await self._send_call(client, desc, tool, arguments, limit, None)

    async def _send_call(
        self,
        client: Client,
        desc: Any,
        tool: str,
        arguments: dict[str, Any] | None,
        limit: float,
        meta: dict[str, Any] | None,
    ) -> Any:
        try:
            async with asyncio.timeout(limit):
                result = await client.call_tool(
                    tool,
                    arguments or {},
                    read_timeout_seconds=limit,
                    meta=meta,  # type: ignore[arg-type]
                )
        except TimeoutError:
            raise RequestTimeout(self.name, tool, limit) from None
        except MCPError as exc:
            raise self._mcp_error(tool, exc) from None
        except AgentCommError:
            raise
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, OSError) as exc:
            self._lost = _reason(exc)
            self._stop.set()
            raise TransportError(f"MCP server {self.name!r} is gone: {self._lost}") from None
        except Exception as exc:  # a result the SDK could not validate, etc.
            raise ToolError(self.name, f"{type(exc).__name__}: {exc}") from None
        if result.is_error:
            text = "; ".join(str(_content_value(b)) for b in result.content) or "tool failed"
            raise ToolError(self.name, text)
        if result.structured_content is not None:
            data = result.structured_content
            if _is_wrapper(desc.output_schema) and list(data) == ["result"]:
                return data["result"]
            return data
        if len(result.content) == 1:
            return _content_value(result.content[0])
        return [_content_value(b) for b in result.content]

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


def _reason(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(_reason(e) for e in exc.exceptions)
    if isinstance(exc, MCPError):
        return exc.message
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _retrieve(fut: asyncio.Future[None]) -> None:
    if not fut.cancelled():
        fut.exception()


def _version() -> str:
    from agentcomm.core.version import __version__

    return __version__
