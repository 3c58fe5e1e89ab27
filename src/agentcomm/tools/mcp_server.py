"""Exposing agents' handlers as MCP tools (needs the ``mcp`` extra; imported lazily).

Use it through the runtime: ``server = await rt.tools.expose("customer-data")``. Every
tool call is sent as an ordinary request through the runtime, so it runs in the
agent's own workers with the same validation, deadlines and access rules as a
direct :meth:`~agentcomm.Agent.request`.

Example::

    async with Runtime(agents=[customer_data]) as rt:
        server = await rt.tools.expose("customer-data")
        async with mcp.Client(server.server) as client:        # in-memory
            print(await client.call_tool("lookup_customer", {"identifier": "c1"}))
        async with server.serve_http(port=8000) as url: ...     # streamable HTTP
        await server.run_stdio()                                 # stdio
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import weakref
from collections.abc import AsyncIterator, Callable, Mapping
from typing import TYPE_CHECKING, Any

import mcp_types as mt
import msgspec
from mcp.server.lowlevel import NotificationOptions, Server
from mcp.server.models import InitializationOptions
from mcp.server.subscriptions import InMemorySubscriptionBus, ListenHandler, ToolsListChanged
from mcp.shared.exceptions import MCPError
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from agentcomm.core.errors import AgentCommError, ConfigurationError, RemoteError
from agentcomm.host.runtime import requests_of
from agentcomm.tools.schemas import tool_schemas

if TYPE_CHECKING:
    from mcp.server.connection import Connection
    from mcp.server.context import ServerRequestContext

    from agentcomm.host.agent import Agent

__all__ = ["MCPExposure"]

logger = logging.getLogger("agentcomm.mcp")

_encode = msgspec.json.Encoder().encode


class _Entry:
    __slots__ = ("agent", "handler", "tool", "wrapped")

    def __init__(self, agent: str, handler: str, tool: mt.Tool, wrapped: bool) -> None:
        self.agent = agent
        self.handler = handler
        self.tool = tool
        self.wrapped = wrapped


class _AgentServer(Server[Any]):
    """The SDK's low-level server, announcing that its tool list can change."""

    def create_initialization_options(
        self,
        notification_options: NotificationOptions | None = None,
        experimental_capabilities: dict[str, dict[str, Any]] | None = None,
        extensions: dict[str, dict[str, Any]] | None = None,
    ) -> InitializationOptions:
        return super().create_initialization_options(
            notification_options or NotificationOptions(tools_changed=True),
            experimental_capabilities,
            extensions,
        )


def _describe(exc: AgentCommError) -> str:
    if isinstance(exc, RemoteError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


class MCPExposure:
    """Some agents' handlers served as MCP tools; made by :meth:`Tools.expose`.

    ``server`` is the SDK's server object (hand it to ``mcp.Client`` for an in-memory
    connection); :meth:`run_stdio` and :meth:`serve_http` serve it to other processes.
    Handlers added or removed at run time show up at once, and connected clients are
    told that the tool list changed.

    Example::

        server = await rt.tools.expose("customer-data", name="customer-data-agent")
        async with server.serve_http("127.0.0.1", 8000) as url:
            print("serving on", url)
    """

    def __init__(
        self,
        on_close: Callable[[MCPExposure], None],
        agents: list[Agent],
        gateway: Agent,
        *,
        name: str,
        timeout: float | None,
    ) -> None:
        self._on_close = on_close
        self._agents = agents
        self._gateway = gateway
        self.name = name
        self.timeout = timeout
        self._table: dict[str, _Entry] | None = None
        self._built = False  # a collision raises at expose(), is logged afterwards
        self._changed = asyncio.Event()
        self._closed = False
        self._bus = InMemorySubscriptionBus()
        # Listen streams of HTTP clients are kept apart so that stopping the HTTP server
        # can end them gracefully instead of waiting for them to time out.
        self._listen = ListenHandler(self._bus, max_subscriptions=256, max_buffered_events=64)
        self._listen_http = ListenHandler(self._bus, max_subscriptions=256, max_buffered_events=64)
        self._legacy: weakref.WeakSet[Connection] = weakref.WeakSet()
        self.server: Server[Any] = _AgentServer(
            name,
            version=_version(),
            description=f"agentcomm agents: {', '.join(a.name for a in agents)}",
            get_tool_input_schema=self._input_schema,
            on_list_tools=self._list_tools,
            on_call_tool=self._call_tool,
            on_subscriptions_listen=self._on_listen,
        )
        for a in agents:
            a.on_change(self._on_agent_change)
        self._build()  # fail now on a name collision

    # -- the tool table ----------------------------------------------------------
    def _on_agent_change(self, agent: Agent) -> None:
        self._table = None
        self._changed.set()

    def _build(self) -> dict[str, _Entry]:
        table: dict[str, _Entry] = {}
        for agent in self._agents:
            for hname, spec in agent.handlers.items():
                tname = agent.mcp_name(hname)
                if tname is None or spec.streams:  # a stream is no one-answer tool
                    continue
                if tname in table:
                    other = table[tname]
                    msg = (
                        f"MCP tool name {tname!r} is used by {other.agent}.{other.handler} and "
                        f"{agent.name}.{hname}; rename one with @agent.handler(mcp='new_name')"
                    )
                    if not self._built:
                        raise ConfigurationError(msg)
                    logger.warning("%s; keeping the first", msg)
                    continue
                in_schema, out_schema, wrapped = tool_schemas(spec)
                tool = mt.Tool(
                    name=tname,
                    description=spec.description or None,
                    input_schema=in_schema,
                    output_schema=out_schema,
                )
                table[tname] = _Entry(agent.name, hname, tool, wrapped)
        self._table = table
        self._built = True
        return table

    def _entries(self) -> dict[str, _Entry]:
        table = self._table
        return table if table is not None else self._build()

    def tool_names(self) -> list[str]:
        """Names of the tools served now.

        Example::

            assert "lookup_customer" in server.tool_names()
        """
        return sorted(self._entries())

    def _input_schema(self, name: str) -> Mapping[str, Any] | None:
        entry = self._entries().get(name)
        return None if entry is None else entry.tool.input_schema

    # -- MCP handlers ---------------------------------------------------------------
    async def _list_tools(
        self, ctx: ServerRequestContext[Any], params: mt.PaginatedRequestParams | None
    ) -> mt.ListToolsResult:
        if ctx.protocol_version not in MODERN_PROTOCOL_VERSIONS:
            # Handshake-era clients get notifications/tools/list_changed on their
            # connection's standalone stream; the SDK keeps one Connection per client.
            conn = getattr(ctx.session, "_connection", None)
            if conn is not None:
                with contextlib.suppress(TypeError):
                    self._legacy.add(conn)
        return mt.ListToolsResult(tools=[e.tool for e in self._entries().values()])

    async def _call_tool(
        self, ctx: ServerRequestContext[Any], params: mt.CallToolRequestParams
    ) -> mt.CallToolResult:
        entry = self._entries().get(params.name)
        if entry is None:
            raise MCPError(
                mt.INVALID_PARAMS,
                f"unknown tool {params.name!r}; this server has {sorted(self._entries())}",
            )
        tracing = self._gateway.runtime.tracing
        if tracing is not None:  # continues the caller's trace from _meta (docs/tracing.md)
            meta = params.meta or {}
            tp = meta.get("traceparent")
            attrs = {
                "agentcomm.mcp.server": self.name,
                "agentcomm.mcp.tool": params.name,
                "agentcomm.agent": entry.agent,
                "agentcomm.handler": entry.handler,
            }
            parent = tp if isinstance(tp, str) else ""
            with tracing.span("call", params.name, kind="server", parent=parent, attributes=attrs):
                result = await self._run_tool(entry, params)
                if result.is_error:
                    block = result.content[0] if result.content else None
                    text = block.text if isinstance(block, mt.TextContent) else "tool failed"
                    tracing.record_failure("error", "ToolError", text)
                return result
        return await self._run_tool(entry, params)

    async def _run_tool(self, entry: _Entry, params: mt.CallToolRequestParams) -> mt.CallToolResult:
        gateway = self._gateway
        try:
            gateway.runtime.authorize(gateway.name, "call", f"{entry.agent}.{entry.handler}")
            result = await requests_of(gateway.runtime).request(
                gateway, entry.agent, entry.handler, params.arguments or {}, timeout=self.timeout
            )
        except AgentCommError as exc:
            return mt.CallToolResult(
                content=[mt.TextContent(type="text", text=_describe(exc))], is_error=True
            )
        text = _encode(result).decode()
        structured: dict[str, Any] | None = None
        if entry.tool.output_schema is not None:
            structured = {"result": result} if entry.wrapped else result
        return mt.CallToolResult(
            content=[mt.TextContent(type="text", text=text)], structured_content=structured
        )

    async def _on_listen(
        self, ctx: ServerRequestContext[Any], params: mt.SubscriptionsListenRequestParams
    ) -> mt.SubscriptionsListenResult:
        handler = self._listen if ctx.request is None else self._listen_http
        return await handler(ctx, params)

    # -- change notifications ---------------------------------------------------------
    async def _notify_changes(self) -> None:
        """Tell connected clients when the tool list changed (runs in the runtime's tasks)."""
        while True:
            await self._changed.wait()
            self._changed.clear()
            if self._closed:
                return
            await self._bus.publish(ToolsListChanged())
            for conn in list(self._legacy):
                try:
                    async with asyncio.timeout(5.0):
                        await conn.send_tool_list_changed()
                except Exception as exc:  # a gone client must not stop the others
                    self._legacy.discard(conn)
                    self._gateway.runtime.report_error("mcp_notify", exc, subject=self.name)

    def close(self) -> None:
        """Stop following the agents' changes and end clients' listen streams.

        Servers started from it stop with their own ``run_*``/``serve_http`` calls;
        the runtime closes every exposure at shutdown.

        Example::

            server.close()
        """
        self._on_close(self)
        self._close()

    def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._changed.set()
        self._listen.close()
        self._listen_http.close()
        for a in self._agents:
            with contextlib.suppress(ValueError):
                a._on_change.remove(self._on_agent_change)

    # -- serving ------------------------------------------------------------------------
    async def run_stdio(self) -> None:
        """Serve over this process's stdin/stdout until the client closes them.

        Example::

            await server.run_stdio()   # `agentcomm mcp serve app:agent` does this
        """
        from mcp.server.stdio import stdio_server

        async with stdio_server() as (read, write):
            await self.server.run(read, write, self.server.create_initialization_options())

    @contextlib.asynccontextmanager
    async def serve_http(
        self, host: str = "127.0.0.1", port: int = 0, *, path: str = "/mcp"
    ) -> AsyncIterator[str]:
        """Serve over streamable HTTP while the block runs; yields the URL.

        Binds to 127.0.0.1 unless told otherwise; ``port=0`` picks a free port.

        Example::

            async with server.serve_http(port=0) as url:
                async with mcp.Client(url) as client: ...
        """
        async with self._http(host, port, path) as (url, _):
            yield url

    async def run_http(
        self,
        host: str = "127.0.0.1",
        port: int = 8000,
        *,
        path: str = "/mcp",
        on_ready: Callable[[str], None] | None = None,
    ) -> None:
        """Serve over streamable HTTP until the server is stopped (Ctrl-C) or cancelled.

        Example::

            await server.run_http("127.0.0.1", 8000, on_ready=print)
        """
        async with self._http(host, port, path) as (url, task):
            if on_ready is not None:
                on_ready(url)
            await task

    @contextlib.asynccontextmanager
    async def _http(
        self, host: str, port: int, path: str
    ) -> AsyncIterator[tuple[str, asyncio.Task[None]]]:
        import uvicorn

        app = self.server.streamable_http_app(streamable_http_path=path, host=host)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            raise ConfigurationError(f"cannot listen on {host}:{port}: {exc}") from None
        bound = sock.getsockname()[1]
        config = uvicorn.Config(
            app, log_level="warning", lifespan="on", access_log=False, timeout_graceful_shutdown=2
        )
        http = uvicorn.Server(config)
        shown = f"[{host}]" if family == socket.AF_INET6 else host
        try:
            async with asyncio.TaskGroup() as tg:
                task = tg.create_task(
                    http.serve(sockets=[sock]), name=f"agentcomm:mcp-http:{bound}"
                )
                try:
                    async with asyncio.timeout(10.0):
                        # uvicorn offers a flag, not an event, for "listening now".
                        while not http.started and not task.done():  # noqa: ASYNC110
                            await asyncio.sleep(0.01)
                    if not http.started:
                        raise ConfigurationError(
                            f"the MCP HTTP server on {host}:{bound} did not start"
                        )
                    yield f"http://{shown}:{bound}{path}", task
                finally:
                    self._listen_http.close()  # end listen streams, so shutdown need not wait
                    http.should_exit = True
        finally:
            sock.close()  # uvicorn closes it on a graceful stop; not when cancelled


def _version() -> str:
    from agentcomm.core.version import __version__

    return __version__
