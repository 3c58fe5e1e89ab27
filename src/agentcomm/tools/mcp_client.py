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
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel
import mcp_types as mt
from mcp import Client, StdioServerParameters
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from agentcomm.core.errors import (
    TransportError,
)
from agentcomm.core.names import check_name
from agentcomm.core.schema import HandlerSpec
from agentcomm.host.agent import Agent
from agentcomm.host.context import Context
from agentcomm.tools.mcp_client_calls import ToolCalls, reason_of
from agentcomm.tools.mcp_handlers import SchemaCodec, handler_name, proxy_spec
from agentcomm.tools.mcp_remote import ElicitHandler, LogHandler, RemoteFeatures, SampleHandler
from agentcomm.tools.schemas import ToolInfo, llm_tool_name

if TYPE_CHECKING:
    from agentcomm.host.runtime import Runtime

__all__ = ["MCPConnection"]

logger = logging.getLogger("agentcomm.mcp")

_GRACE = 0.25  # seconds an MCP call may outlive its caller's deadline


class MCPConnection(ToolCalls, RemoteFeatures):
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
        on_elicit: ElicitHandler | None = None,
        on_sample: SampleHandler | None = None,
        on_log: LogHandler | None = None,
        on_update: Callable[[str], Any] | None = None,
        log_level: str | None = "info",
        headers: dict[str, str] | None = None,
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
        self._on_elicit = on_elicit
        self._on_sample = on_sample
        self._on_log = on_log
        self._on_update = on_update
        self._log_level = log_level
        self._headers = headers
        self.agent: Agent | None = None
        #: Tools of the server left out of the catalogue, with the reason.
        self.skipped: dict[str, str] = {}
        #: The server's ``serverInfo`` (name, version...), once connected.
        self.server_info: mt.Implementation | None = None

    def __repr__(self) -> str:
        target = self._url or " ".join(self._command or [])
        return f"<MCPConnection {self.name!r} to {target!r} tools={sorted(self._tools)}>"

    @property
    def connected(self) -> bool:
        """True while the session is up."""
        return self._client is not None

    @property
    def server_name(self) -> str | None:
        """The name the server gave itself (``serverInfo.name``).

        Example::

            print(conn.server_name, conn.server_version)
        """
        return None if self.server_info is None else self.server_info.name

    @property
    def server_version(self) -> str | None:
        """The version the server reported (``serverInfo.version``)."""
        return None if self.server_info is None else self.server_info.version

    def _live(self) -> Client:
        client = self._client
        if client is None:
            why = f": {self._lost}" if self._lost else ""
            raise TransportError(f"MCP server {self.name!r} is not connected{why}")
        return client

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
        if self._url is not None and self._headers:
            return _http_with_headers(self._url, self._headers)
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
                log_level=self._log_level,  # type: ignore[arg-type]
                **self._callbacks(),
            )
            async with client, asyncio.TaskGroup() as tg:
                self._client = client
                self.server_info = client.server_info
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
            reason = reason_of(exc)
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
        elif isinstance(message, mt.ResourceUpdatedNotification) and self._on_update:
            try:
                got = self._on_update(str(message.params.uri))
                if asyncio.iscoroutine(got):
                    await got
            except Exception:
                logger.exception("MCP server %s: on_update failed", self.name)
        await anyio.lowlevel.checkpoint()

    async def _fetch_tools(self, client: Client) -> None:
        tools: dict[str, mt.Tool] = {}
        cursor: str | None = None
        for _ in range(100):  # bounded pagination
            page = await client.list_tools(cursor=cursor, cache_mode="bypass")
            for t in page.tools:
                support = t.execution.task_support if t.execution is not None else None
                if support == "required":  # callable only as an MCP task: left out, said why
                    why = "the tool must be run as an MCP task (taskSupport: required)"
                    if self.skipped.get(t.name) != why:
                        logger.warning(
                            "MCP server %s: tool %s left out: %s", self.name, t.name, why
                        )
                    self.skipped[t.name] = why
                    continue
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

            async def progress(done: float, total: float | None, message: str | None) -> None:
                await ctx.progress(done, total, message)  # the server's, to our caller

            # A little past the caller's deadline: the caller then times out on its
            # own (RequestTimeout) instead of receiving our timeout as a RemoteError.
            limit = None if left is None else left + _GRACE
            return await self._call(tool, arguments, limit, progress)

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


@contextlib.asynccontextmanager
async def _http_with_headers(url: str, headers: dict[str, str]) -> AsyncIterator[Any]:
    """Streamable HTTP with extra headers (``Authorization: Bearer ...``) on every request."""
    import httpx2
    from mcp.client.streamable_http import streamable_http_client

    timeout = httpx2.Timeout(30.0, read=300.0)
    async with (
        httpx2.AsyncClient(headers=headers, timeout=timeout) as http,
        streamable_http_client(url, http_client=http) as streams,
    ):
        yield streams


def _retrieve(fut: asyncio.Future[None]) -> None:
    if not fut.cancelled():
        fut.exception()


def _version() -> str:
    from agentcomm.core.version import __version__

    return __version__
