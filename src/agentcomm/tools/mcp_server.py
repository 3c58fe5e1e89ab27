"""Exposing agents as an MCP server (needs the ``mcp`` extra; imported lazily).

Use it through the runtime: ``server = await rt.tools.expose("customer-data")``. Every
tool call is sent as an ordinary request through the runtime, so it runs in the
agent's own workers with the same validation, deadlines and access rules as a
direct :meth:`~agentcomm.Agent.request`. Besides tools, an exposure serves the
agents' prompts and resources (:mod:`.mcp_resources`), logging, progress,
elicitation and sampling (:mod:`.mcp_calls`); serving over stdio or HTTP is in
:mod:`.mcp_http`.

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
import weakref
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import mcp_types as mt
import msgspec
from mcp.server.lowlevel import NotificationOptions, Server
from mcp.server.models import InitializationOptions
from mcp.server.request_state import RequestStateBoundary, RequestStateSecurity
from mcp.server.subscriptions import InMemorySubscriptionBus, ListenHandler, ToolsListChanged
from mcp.shared.exceptions import MCPError
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from agentcomm.core.errors import AgentCommError, ConfigurationError, PermissionDenied, RemoteError
from agentcomm.host.context import CALLER_HEADER, CALLERS
from agentcomm.host.runtime import requests_of, runtime_of
from agentcomm.tools.content import is_content_type
from agentcomm.tools.mcp_calls import (
    LEVELS,
    MCPCall,
    MCPCalls,
    input_required,
    missing_capability,
)
from agentcomm.tools.mcp_content import to_blocks
from agentcomm.tools.mcp_http import HTTPServing
from agentcomm.tools.mcp_resources import BoardLike, Surface
from agentcomm.tools.schemas import tool_schemas

if TYPE_CHECKING:
    from mcp.server.connection import Connection
    from mcp.server.context import ServerRequestContext

    from agentcomm.core.schema import HandlerSpec
    from agentcomm.host.agent import Agent

__all__ = ["MCPExposure"]

logger = logging.getLogger("agentcomm.mcp")

_encode = msgspec.json.Encoder().encode
_DIALECT = "https://json-schema.org/draft/2020-12/schema"


class _Entry:
    __slots__ = ("agent", "handler", "needs_call", "no_args", "returns", "tool", "wrapped")

    def __init__(self, agent: str, handler: str, spec: HandlerSpec, tool: mt.Tool, wrapped: bool):
        self.agent = agent
        self.handler = handler
        self.tool = tool
        self.wrapped = wrapped
        self.no_args = spec.mode == "none"
        self.needs_call = spec.context_arg is not None  # may use ctx.progress/log/ask/sample
        # Content results (Image, Audio, Resource...) are decoded as their types.
        out = spec.output.type if spec.output is not None else None
        self.returns = out if out is not None and is_content_type(out) else None


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


def _error(text: str) -> mt.CallToolResult:
    return mt.CallToolResult(content=[mt.TextContent(type="text", text=text)], is_error=True)


class MCPExposure(HTTPServing):
    """Some agents served as an MCP server; made by :meth:`Tools.expose`.

    ``server`` is the SDK's server object (hand it to ``mcp.Client`` for an in-memory
    connection); :meth:`run_stdio` and :meth:`serve_http` serve it to other processes.
    Handlers added or removed at run time show up at once, and connected clients are
    told that the tool list changed. A client sees only the tools its identity may
    call (``mcp-gateway``, or with bearer tokens the token's identity).

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
        board: Mapping[str, str] | None = None,
        board_for: Callable[[str], BoardLike] | None = None,
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
        self._levels: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()
        self._calls: MCPCalls = runtime_of(gateway).extension(CALLERS, MCPCalls)
        self._surface = Surface(
            agents,
            board=board or {},
            board_for=board_for,
            identity=self.identity,
            calls=self._calls,
            sender=gateway.name,
            levels=self._levels,
            timeout=timeout,
        )
        surface = self._surface
        server: Server[Any] = _AgentServer(
            name,
            version=_version(),
            description=f"agentcomm agents: {', '.join(a.name for a in agents)}",
            get_tool_input_schema=self._input_schema,
            on_list_tools=self._list_tools,
            on_call_tool=self._call_tool,
            on_subscriptions_listen=self._on_listen,
            on_list_resources=surface.list_resources,
            on_list_resource_templates=surface.list_templates,
            on_read_resource=surface.read_resource,
            on_subscribe_resource=surface.subscribe,
            on_unsubscribe_resource=surface.unsubscribe,
            on_list_prompts=surface.list_prompts,
            on_get_prompt=surface.get_prompt,
            on_completion=surface.complete,
        )
        # Registered directly: the constructor keyword warns that logging is deprecated
        # in the 2026-07-28 revision, which handshake-era clients still use.
        server.add_request_handler("logging/setLevel", mt.SetLevelRequestParams, self._set_level)
        # 2026-07-28 input_required rounds: the call's state is sealed (AES-GCM, a key of
        # this process) on the way out and checked on the way back (tampering: -32602).
        boundary = RequestStateBoundary(RequestStateSecurity.ephemeral(), default_audience=name)
        server.middleware.append(boundary)
        self.server = server
        for a in agents:
            a.on_change(self._on_agent_change)
        self._build()  # fail now on a name collision

    # -- the caller ---------------------------------------------------------------
    def identity(self, ctx: ServerRequestContext[Any]) -> str:
        """Who is calling: the bearer token's identity over HTTP with auth, else the gateway."""
        request = ctx.request
        user = getattr(request, "scope", {}).get("user") if request is not None else None
        token = getattr(user, "access_token", None)
        if token is not None:
            return str(token.client_id)
        return self._gateway.name

    def _may_call(self, identity: str, entry: _Entry) -> bool:
        try:
            self._gateway.runtime.authorize(identity, "call", f"{entry.agent}.{entry.handler}")
        except PermissionDenied:
            return False
        return True

    # -- the tool table ----------------------------------------------------------------
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
                in_schema = {"$schema": _DIALECT, **in_schema}
                if spec.mode == "none":  # one rule: unknown arguments are refused
                    in_schema["additionalProperties"] = False
                out = spec.output.type if spec.output is not None else None
                if out is not None and is_content_type(out):
                    out_schema, wrapped = None, False  # content blocks, not structured
                tool = mt.Tool(
                    name=tname,
                    description=spec.description or None,
                    input_schema=in_schema,
                    output_schema=out_schema,
                )
                table[tname] = _Entry(agent.name, hname, spec, tool, wrapped)
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
        entries = self._entries().values()
        if self._gateway.runtime.access is not None:  # only what this caller may call
            who = self.identity(ctx)
            entries = [e for e in entries if self._may_call(who, e)]  # type: ignore[assignment]
        return mt.ListToolsResult(tools=[e.tool for e in entries])

    async def _set_level(
        self, ctx: ServerRequestContext[Any], params: mt.SetLevelRequestParams
    ) -> mt.EmptyResult:
        if params.level not in LEVELS:
            raise MCPError(mt.INVALID_PARAMS, f"unknown log level {params.level!r}")
        conn = getattr(ctx.session, "_connection", None)
        if conn is not None:
            with contextlib.suppress(TypeError):
                self._levels[conn] = params.level
        return mt.EmptyResult()

    async def _call_tool(
        self, ctx: ServerRequestContext[Any], params: mt.CallToolRequestParams
    ) -> mt.CallToolResult | mt.InputRequiredResult:
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
                result = await self._run_tool(ctx, entry, params)
                if isinstance(result, mt.CallToolResult) and result.is_error:
                    block = result.content[0] if result.content else None
                    text = block.text if isinstance(block, mt.TextContent) else "tool failed"
                    tracing.record_failure("error", "ToolError", text)
                return result
        return await self._run_tool(ctx, entry, params)

    async def _run_tool(
        self, ctx: ServerRequestContext[Any], entry: _Entry, params: mt.CallToolRequestParams
    ) -> mt.CallToolResult | mt.InputRequiredResult:
        gateway = self._gateway
        rt = gateway.runtime
        arguments = params.arguments or {}
        if entry.no_args and arguments:
            return _error(
                f"ValidationError: {entry.agent} refused the payload: {params.name} takes no "
                f"arguments; unknown fields {sorted(arguments)}"
            )
        call: MCPCall | None = None
        try:
            who = self.identity(ctx) if rt.access is not None else gateway.name
            rt.authorize(who, "call", f"{entry.agent}.{entry.handler}")
            async with contextlib.AsyncExitStack() as stack:
                headers: dict[str, str] | None = None
                if entry.needs_call:
                    call_id, call = await stack.enter_async_context(
                        self._calls.open(gateway.name, ctx, self._levels, params)
                    )
                    headers = {CALLER_HEADER: call_id}
                result = await requests_of(rt).request(
                    gateway,
                    entry.agent,
                    entry.handler,
                    arguments,
                    timeout=self.timeout,
                    returns=entry.returns,
                    headers=headers,
                )
        except AgentCommError as exc:
            asking = input_required(call)  # 2026-07-28: ask the client, then run again
            if asking is not None:
                return asking
            missing = missing_capability(call, params.name)
            if missing is not None and getattr(exc, "type", "") == "ClientUnsupported":
                raise missing from None
            return _error(_describe(exc))
        if entry.returns is not None:
            return mt.CallToolResult(content=to_blocks(result))
        text = result if isinstance(result, str) else _encode(result).decode()
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
    async def resource_updated(self, uri: str) -> None:
        """Tell the clients subscribed to ``uri`` that it changed.

        Blackboard resources (``board://``) are told by their watch; call this for an
        ``@agent.resource`` whose content changed.

        Example::

            await server.resource_updated("notes://today")
        """
        for session in self._surface.sessions_for(uri):
            try:
                await session.send_resource_updated(uri)
            except Exception as exc:  # a gone client must not stop the others
                logger.debug("resource update for %s not delivered: %s", uri, exc)

    async def _notify_changes(self) -> None:
        """Tell connected clients when the tool list changed (runs in the runtime's tasks)."""
        while True:
            await self._changed.wait()
            self._changed.clear()
            if self._closed:
                await self._surface.aclose()
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


def _version() -> str:
    from agentcomm.core.version import __version__

    return __version__
