"""Tool sharing: the runtime's catalogue of capabilities, MCP exposure and consumption.

``rt.tools`` lists every capability in the runtime (our agents' handlers and tools
imported from MCP servers) with their JSON Schemas, turns them into the tool
definitions LLM function-calling APIs take, serves agents as MCP tools
(:meth:`Tools.expose`) and imports other MCP servers' tools (:meth:`Tools.connect`)
as a proxy agent, so ``agent.request(server, tool, args)`` works whether the
capability lives in-process, behind NATS or behind MCP. This module never imports
the ``mcp`` SDK at import time; the MCP parts load it when first used.

Example::

    async with Runtime(agents=[customer_data, billing]) as rt:
        for tool in rt.tools.catalogue():
            print(tool.agent, tool.handler, tool.input_schema)
        await rt.tools.connect("everything", command=["mcp-server-everything", "stdio"])
        print(await rt.agent("me").request("everything", "echo", {"message": "hi"}))
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from agentcomm.core.errors import AgentCommError, ConfigurationError, TransportClosed
from agentcomm.tools.schemas import (
    _ANY_OBJECT,
    ToolError,
    ToolInfo,
    _warn_schema_once,
    anthropic_tool,
    llm_tool_name,
    load_agents,
    openai_tool,
    tool_schemas,
)

if TYPE_CHECKING:
    from agentcomm.host.agent import Agent
    from agentcomm.host.runtime import Runtime
    from agentcomm.tools.mcp_client import MCPConnection
    from agentcomm.tools.mcp_remote import ElicitHandler, LogHandler, SampleHandler
    from agentcomm.tools.mcp_resources import BoardLike
    from agentcomm.tools.mcp_server import MCPExposure

__all__ = [
    "ToolError",
    "ToolInfo",
    "Tools",
    "anthropic_tool",
    "llm_tool_name",
    "load_agents",
    "openai_tool",
    "tool_schemas",
]

# The descriptions live in tools.schemas (below the MCP modules); re-exported here.

logger = logging.getLogger("agentcomm.mcp")

_JSON = "application/json"


class Tools:
    """The runtime's tool catalogue and MCP bridge; use it as ``rt.tools``.

    Example::

        async with Runtime(agents=[calc]) as rt:
            print([t.llm_name for t in rt.tools.catalogue()])
            server = await rt.tools.expose("calc")
            conn = await rt.tools.connect("remote", url="http://127.0.0.1:8000/mcp")
    """

    #: Name of the internal agent that MCP tool calls are sent from.
    GATEWAY = "mcp-gateway"

    def __init__(
        self, runtime: Runtime, board_for: Callable[[str], BoardLike] | None = None
    ) -> None:
        self._rt = runtime
        #: ``board_for(author)``: the blackboard as one author (set by ``agentcomm.Runtime``),
        #: for the blackboard resources of :meth:`expose`.
        self.board_for = board_for
        self._connections: dict[str, MCPConnection] = {}
        self._exposures: list[MCPExposure] = []
        self._gateway: Agent | None = None
        self._lock = asyncio.Lock()

    def _exposure_closed(self, exposure: MCPExposure) -> None:
        self._exposures[:] = [e for e in self._exposures if e is not exposure]

    @classmethod
    def of(cls, runtime: Runtime) -> Tools:
        """The runtime's tools (``rt.tools``), created on first use.

        Example::

            infos = Tools.of(rt).catalogue()
        """
        tools: Tools = runtime.extension("tools", cls)
        return tools

    # -- catalogue -------------------------------------------------------------
    def catalogue(self) -> list[ToolInfo]:
        """Every capability in the runtime, with schemas, sorted by agent and handler.

        Example::

            for t in rt.tools.catalogue(): print(t.agent, t.handler, t.description)
        """
        out: list[ToolInfo] = []
        for agent in sorted(self._rt.agents.values(), key=lambda a: a.name):
            out.extend(self._agent_infos(agent))
        return out

    def agent_catalogue(self, name: str) -> list[ToolInfo]:
        """The capabilities of the one agent ``name`` (``[]`` when it is not here), as in
        :meth:`catalogue` (its cost is this agent's, not the whole runtime's).

        Example::

            for t in rt.tools.agent_catalogue("calc"): print(t.handler)
        """
        agent = self._rt.agents.get(name)
        return [] if agent is None else self._agent_infos(agent)

    def _agent_infos(self, agent: Agent) -> list[ToolInfo]:
        out: list[ToolInfo] = []
        conn = self._connections.get(agent.name)
        if conn is not None and conn.agent is agent:
            return list(conn.tool_infos())
        for hname in sorted(agent.handlers):
            spec = agent.handlers[hname]
            if spec.streams:  # called with stream(), not as a one-answer tool
                continue
            try:
                inp, outp, _ = tool_schemas(spec)
            except AgentCommError as exc:  # one odd handler never hides the others
                _warn_schema_once(agent.name, hname, exc)
                inp, outp = dict(_ANY_OBJECT), None
            mcp_name = agent.mcp_name(hname)
            out.append(
                ToolInfo(
                    name=mcp_name or hname,
                    agent=agent.name,
                    handler=hname,
                    llm_name=llm_tool_name(agent.name, hname),
                    description=spec.description,
                    input_schema=inp,
                    output_schema=outp,
                    exposed=mcp_name is not None,
                )
            )
        return out

    def find(self, llm_name: str) -> ToolInfo:
        """The catalogue entry with this ``llm_name`` (what an LLM's tool call names).

        Example::

            info = rt.tools.find(tool_call.name)
            result = await me.request(info.agent, info.handler, tool_call.arguments)
        """
        for info in self.catalogue():
            if info.llm_name == llm_name:
                return info
        from agentcomm.core.errors import UnknownHandler

        raise UnknownHandler(f"no tool named {llm_name!r} in this runtime's catalogue")

    def openai_tools(self, *, agents: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """OpenAI-style function definitions of the catalogue (optionally some agents only).

        Example::

            client.chat.completions.create(model=..., messages=..., tools=rt.tools.openai_tools())
        """
        return [openai_tool(t) for t in self.catalogue() if agents is None or t.agent in agents]

    def anthropic_tools(self, *, agents: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """Anthropic-style tool definitions of the catalogue (optionally some agents only).

        Example::

            client.messages.create(model=..., messages=..., tools=rt.tools.anthropic_tools())
        """
        return [anthropic_tool(t) for t in self.catalogue() if agents is None or t.agent in agents]

    # -- exposure ----------------------------------------------------------------
    async def _ensure_gateway(self) -> Agent:
        async with self._lock:
            if self._gateway is None:
                from agentcomm.host.agent import Agent

                self._gateway = await self._rt.attach(
                    Agent(self.GATEWAY, concurrency=1, mailbox_size=16)
                )
            return self._gateway

    async def expose(
        self,
        *agents: str | Agent,
        name: str | None = None,
        timeout: float | None = None,
        board: Sequence[str] | Mapping[str, str] = (),
    ) -> MCPExposure:
        """Serve agents as an MCP server; with no agents, every agent with handlers.

        Their handlers are tools, their ``@agent.prompt`` prompts and ``@agent.resource``
        resources are served too. Tool calls become requests from the internal
        ``mcp-gateway`` agent, bounded by ``timeout`` (default: the runtime's).
        ``board`` publishes blackboard prefixes as ``board://<key>`` resources (a
        mapping gives each prefix a MIME type; non-text types are served as binary
        blobs; default ``application/json``). The runtime must be running.

        Example::

            server = await rt.tools.expose("customer-data", board=["plan."])
            await server.run_stdio()
        """
        if not self._rt.running:
            raise TransportClosed("the runtime is not running; call expose() inside `async with`")
        from agentcomm.tools.mcp_server import MCPExposure

        known = self._rt.agents
        chosen: list[Agent] = []
        if agents:
            for a in agents:
                aname = a if isinstance(a, str) else a.name
                agent = known.get(aname)
                if agent is None:
                    raise ConfigurationError(
                        f"no agent named {aname!r} in this runtime; it has {sorted(known)}"
                    )
                chosen.append(agent)
        else:
            chosen = [
                a
                for n, a in sorted(known.items())
                if (a.handlers or a.declarations.get("prompts") or a.declarations.get("resources"))
                and n != self.GATEWAY
                and n not in self._connections
            ]
        gateway = await self._ensure_gateway()
        exposure = MCPExposure(
            self._exposure_closed,
            chosen,
            gateway,
            name=name or (chosen[0].name if len(chosen) == 1 else "agentcomm"),
            timeout=timeout,
            board=dict(board) if isinstance(board, Mapping) else dict.fromkeys(board, _JSON),
            board_for=self.board_for,
        )
        self._exposures.append(exposure)
        self._rt.task_group.create_task(
            exposure._notify_changes(), name=f"agentcomm:mcp-notify:{exposure.name}"
        )
        return exposure

    # -- consumption -----------------------------------------------------------------
    async def connect(
        self,
        name: str,
        *,
        command: Sequence[str] | None = None,
        url: str | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        timeout: float = 30.0,
        connect_timeout: float = 60.0,
        mode: str = "auto",
        on_elicit: ElicitHandler | None = None,
        on_sample: SampleHandler | None = None,
        on_log: LogHandler | None = None,
        on_update: Callable[[str], Any] | None = None,
        log_level: str | None = "info",
        headers: Mapping[str, str] | None = None,
    ) -> MCPConnection:
        """Connect to an MCP server (a stdio ``command`` or a streamable-HTTP ``url``).

        Its tools become handlers of a proxy agent called ``name``, so any agent calls
        them with ``request(name, tool, arguments)``; they join the catalogue.
        ``timeout`` bounds each call without a caller deadline; ``connect_timeout``
        bounds start-up. ``mode`` is the SDK's protocol negotiation: ``"auto"`` (the
        2026-07-28 protocol when the server speaks it) or ``"legacy"`` (the
        handshake-era protocol; with SDK 2.3.0 much faster per call over HTTP, see
        docs/mcp.md). Raises :class:`TransportError` when the server cannot be reached.

        The server's requests reach the callbacks (sync or async): ``on_elicit(message,
        schema)`` answers ``elicitation/create`` with a content dict (``None``
        declines), ``on_sample(messages, options)`` answers ``sampling/createMessage``
        with a ``str`` (or an Image, or a Message), ``on_log(level, data, logger)``
        hears its log messages at ``log_level`` and above (they also go to the
        standard logger ``agentcomm.mcp.<name>``), ``on_update(uri)`` hears
        ``notifications/resources/updated`` for :meth:`MCPConnection.subscribe`.
        Progress the server reports reaches the caller's ``on_progress``. ``headers``
        go with every HTTP request (``{"Authorization": "Bearer <token>"}``).

        Example::

            await rt.tools.connect("everything", command=["npx", "-y",
                                   "@modelcontextprotocol/server-everything"])
            await me.request("everything", "echo", {"message": "hi"})
        """
        if not self._rt.running:
            raise TransportClosed("the runtime is not running; call connect() inside `async with`")
        if (command is None) == (url is None):
            raise ConfigurationError("connect() takes exactly one of command=[...] or url='...'")
        if command is not None and (isinstance(command, str) or not command):
            raise ConfigurationError("command must be a non-empty list: ['npx', '-y', 'pkg']")
        if name in self._rt.agents:
            raise ConfigurationError(
                f"an agent named {name!r} already exists; pick another name for the MCP server"
            )
        from agentcomm.tools.mcp_client import MCPConnection

        conn = MCPConnection(
            self._rt,
            name,
            on_gone=self._forget,
            command=list(command) if command is not None else None,
            url=url,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            timeout=timeout,
            mode=mode,
            on_elicit=on_elicit,
            on_sample=on_sample,
            on_log=on_log,
            on_update=on_update,
            log_level=log_level,
            headers=dict(headers) if headers else None,
        )
        self._connections[name] = conn
        try:
            await conn._start(connect_timeout)
        except BaseException:
            self._connections.pop(name, None)
            raise
        return conn

    def connection(self, name: str) -> MCPConnection:
        """The connection made by :meth:`connect` under ``name``.

        Example::

            print(rt.tools.connection("everything").tool_names())
        """
        conn = self._connections.get(name)
        if conn is None:
            raise ConfigurationError(
                f"no MCP connection named {name!r}; connected: {sorted(self._connections)}"
            )
        return conn

    async def disconnect(self, name: str) -> None:
        """Close an MCP connection and remove its proxy agent.

        Example::

            await rt.tools.disconnect("everything")
        """
        conn = self.connection(name)
        await conn.aclose()
        self._connections.pop(name, None)

    def _forget(self, name: str) -> None:
        self._connections.pop(name, None)

    async def aclose(self) -> None:
        """Stop change notifications and close every MCP connection (runtime shutdown)."""
        for exposure in self._exposures:
            exposure._close()
        self._exposures.clear()
        for conn in list(self._connections.values()):
            try:
                await conn.aclose()
            except Exception:
                logger.exception("closing MCP connection %s failed", conn.name)
        self._connections.clear()


# -- command-line helpers (used by ``agentcomm mcp serve`` and ``agentcomm tools``) ----------
