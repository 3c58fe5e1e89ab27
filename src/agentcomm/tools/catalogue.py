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
import hashlib
import logging
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import msgspec

from agentcomm.core.errors import AgentCommError, ConfigurationError, RemoteError, TransportClosed

if TYPE_CHECKING:
    from agentcomm.core.schema import HandlerSpec
    from agentcomm.host.agent import Agent
    from agentcomm.host.runtime import Runtime
    from agentcomm.tools.mcp_client import MCPConnection
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

logger = logging.getLogger("agentcomm.mcp")

_LLM_NAME_BAD = re.compile(r"[^A-Za-z0-9_-]")


class ToolError(RemoteError):
    """An MCP tool reported a failure (``isError``); ``message`` is the tool's own text.

    Example::

        try:
            await conn.call_tool("lookup_customer", {"identifier": "nobody"})
        except ToolError as exc:
            print(exc.source, "said:", exc.message)
    """

    def __init__(self, source: str, message: str) -> None:
        super().__init__(source, "ToolError", message)
        self.args = (message,)  # str(exc) is the tool's own text; exc.source names the server

    def __str__(self) -> str:
        return self.message


class ToolInfo(msgspec.Struct, frozen=True, kw_only=True):
    """One capability in the runtime's catalogue (see :meth:`Tools.catalogue`).

    ``agent`` and ``handler`` are what :meth:`Agent.request` takes; ``name`` is the
    tool's MCP name (the renamed one, or the remote server's own); ``source`` is
    ``"agent"`` for our handlers and ``"mcp"`` for tools imported from ``server``;
    ``llm_name`` is unique in the runtime and fits LLM APIs (``[A-Za-z0-9_-]{1,64}``).

    Example::

        info = rt.tools.find("customer-data__lookup_customer")
        await me.request(info.agent, info.handler, {"identifier": "c1"})
    """

    name: str
    agent: str
    handler: str
    llm_name: str
    description: str
    input_schema: dict[str, Any]
    output_schema: dict[str, Any] | None = None
    source: str = "agent"
    server: str | None = None
    exposed: bool = True


#: What a handler whose types have no JSON Schema is described with: any JSON object.
_ANY_OBJECT: Mapping[str, Any] = {"type": "object", "properties": {}, "additionalProperties": True}
_schema_warned: set[tuple[str, str]] = set()


def _warn_schema_once(agent: str, handler: str, exc: Exception) -> None:
    if (agent, handler) not in _schema_warned and len(_schema_warned) < 1024:
        _schema_warned.add((agent, handler))
        logger.warning("%s.%s is described as any JSON object: %s", agent, handler, exc)


def _object_schema(schema: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(schema)
    out.pop("title", None)
    if out.get("type") != "object":
        return {"type": "object", "properties": {}, "additionalProperties": True}
    return out


def tool_schemas(spec: HandlerSpec) -> tuple[dict[str, Any], dict[str, Any] | None, bool]:
    """The MCP input schema, output schema and "wrapped" flag of a handler.

    An output that is not a JSON object is wrapped as ``{"result": value}`` (the MCP
    SDK's convention), since MCP structured content must be an object.

    Example::

        inp, out, wrapped = tool_schemas(agent.handlers["add"])
        assert inp["type"] == "object" and wrapped
    """
    if spec.mode == "none":
        inp: dict[str, Any] = {"type": "object", "properties": {}}
    else:
        inp = _object_schema(spec.input.json_schema())
    if spec.output is None:
        return inp, None, False
    out = dict(spec.output.json_schema())
    if out.get("type") == "object" and "anyOf" not in out:
        out.pop("title", None)
        return inp, out, False
    defs = out.pop("$defs", None)
    wrapper: dict[str, Any] = {
        "type": "object",
        "properties": {"result": out},
        "required": ["result"],
    }
    if defs:
        wrapper["$defs"] = defs
    return inp, wrapper, True


def llm_tool_name(agent: str, handler: str) -> str:
    """The LLM-safe unique name of ``agent``'s ``handler``: ``agent__handler``, <= 64 chars.

    Example::

        assert llm_tool_name("customer-data", "lookup") == "customer-data__lookup"
    """
    name = _LLM_NAME_BAD.sub("_", f"{agent}__{handler}")
    if len(name) <= 64:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[:55]}_{digest}"


def openai_tool(info: ToolInfo) -> dict[str, Any]:
    """An OpenAI-style function tool definition (Chat Completions ``tools=[...]``).

    Example::

        tools = [openai_tool(t) for t in rt.tools.catalogue()]
    """
    return {
        "type": "function",
        "function": {
            "name": info.llm_name,
            "description": info.description or f"{info.handler} of agent {info.agent}",
            "parameters": info.input_schema,
        },
    }


def anthropic_tool(info: ToolInfo) -> dict[str, Any]:
    """An Anthropic-style tool definition (Messages API ``tools=[...]``).

    Example::

        tools = [anthropic_tool(t) for t in rt.tools.catalogue()]
    """
    return {
        "name": info.llm_name,
        "description": info.description or f"{info.handler} of agent {info.agent}",
        "input_schema": info.input_schema,
    }


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

    def __init__(self, runtime: Runtime) -> None:
        self._rt = runtime
        self._connections: dict[str, MCPConnection] = {}
        self._exposures: list[MCPExposure] = []
        self._gateway: Agent | None = None
        self._lock = asyncio.Lock()

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
            conn = self._connections.get(agent.name)
            if conn is not None and conn.agent is agent:
                out.extend(conn.tool_infos())
                continue
            for hname in sorted(agent.handlers):
                spec = agent.handlers[hname]
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
    ) -> MCPExposure:
        """Serve agents' handlers as MCP tools; with no agents, every agent with handlers.

        Tool calls become requests from the internal ``mcp-gateway`` agent, bounded by
        ``timeout`` (default: the runtime's). The runtime must be running.

        Example::

            server = await rt.tools.expose("customer-data")
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
                if a.handlers and n != self.GATEWAY and n not in self._connections
            ]
        gateway = await self._ensure_gateway()
        exposure = MCPExposure(
            self,
            chosen,
            gateway,
            name=name or (chosen[0].name if len(chosen) == 1 else "agentcomm"),
            timeout=timeout,
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
    ) -> MCPConnection:
        """Connect to an MCP server (a stdio ``command`` or a streamable-HTTP ``url``).

        Its tools become handlers of a proxy agent called ``name``, so any agent calls
        them with ``request(name, tool, arguments)``; they join the catalogue.
        ``timeout`` bounds each call without a caller deadline; ``connect_timeout``
        bounds start-up. ``mode`` is the SDK's protocol negotiation: ``"auto"`` (the
        2026-07-28 protocol when the server speaks it) or ``"legacy"`` (the
        handshake-era protocol; with SDK 2.3.0 much faster per call over HTTP, see
        docs/mcp.md). Raises :class:`TransportError` when the server cannot be reached.

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
            command=list(command) if command is not None else None,
            url=url,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            timeout=timeout,
            mode=mode,
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
def load_agents(target: str) -> list[Agent]:
    """Import ``module:attr`` or ``file.py:attr``: an Agent, a list of them, a Runtime, or a
    function returning one of those (called with no arguments).

    Example::

        agents = load_agents("myapp.agents:customer_data")
    """
    import importlib
    import importlib.util
    import sys
    from pathlib import Path

    from agentcomm.host.agent import Agent
    from agentcomm.host.runtime import Runtime

    where, sep, attr = target.rpartition(":")
    if not sep or not where or not attr:
        raise ConfigurationError(
            f"expected module:attr or file.py:attr, got {target!r} "
            "(e.g. myapp.agents:customer_data)"
        )
    if where.endswith(".py") or "/" in where:
        path = Path(where)
        if not path.is_file():
            raise ConfigurationError(f"no such file: {where}")
        modname = f"_agentcomm_target_{path.stem}"
        spec = importlib.util.spec_from_file_location(modname, path)
        if spec is None or spec.loader is None:
            raise ConfigurationError(f"cannot import {where}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[modname] = module
        spec.loader.exec_module(module)
    else:
        if "" not in sys.path:
            sys.path.insert(0, "")
        module = importlib.import_module(where)
    try:
        obj = getattr(module, attr)
    except AttributeError:
        raise ConfigurationError(f"{where} has no attribute {attr!r}") from None
    if callable(obj) and not isinstance(obj, Agent | Runtime | type):
        obj = obj()  # a factory: module:make_agents
    if isinstance(obj, Runtime):
        return list(obj.agents.values())
    if isinstance(obj, Agent):
        return [obj]
    if isinstance(obj, list | tuple) and all(isinstance(a, Agent) for a in obj):
        return list(obj)
    raise ConfigurationError(
        f"{target} is a {type(obj).__name__}; expected an Agent, a list of Agents, a Runtime "
        "or a function returning one"
    )
