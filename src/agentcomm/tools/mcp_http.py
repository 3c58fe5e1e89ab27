"""Serving an exposure over stdio and streamable HTTP, with bearer tokens (internal).

:class:`HTTPServing` is the serving half of :class:`~agentcomm.tools.mcp_server.MCPExposure`.
Over HTTP, ``tokens=`` turns on the SDK's bearer-token authorization: a mapping of
token to identity, or any SDK ``TokenVerifier``; the identity (the token's
``client_id``) is who the runtime's policy sees for that client: the tools it may
not call are neither listed nor callable, and blackboard resources are read as it.

Example::

    async with server.serve_http(port=0, tokens={"s3cret": "alice"}) as url:
        async with mcp.Client(url, auth=...) as client: ...
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable, Mapping
from typing import TYPE_CHECKING, Any

from mcp.server.auth.provider import AccessToken, TokenVerifier
from mcp.server.streamable_http import EventCallback, EventMessage, EventStore

from agentcomm.core.errors import ConfigurationError

if TYPE_CHECKING:
    from mcp.server.lowlevel import Server
    from mcp.server.subscriptions import ListenHandler
    from mcp_types import JSONRPCMessage

__all__ = ["HTTPServing", "StaticTokens"]

#: Seconds a handshake-era client waits before reconnecting a closed SSE stream.
RETRY_MS = 1000


class StaticTokens:
    """A token verifier from a fixed mapping ``token -> identity`` (tests, small setups).

    Example::

        async with server.serve_http(port=0, tokens=StaticTokens({"t1": "alice"})) as url: ...
    """

    def __init__(self, tokens: Mapping[str, str], scopes: list[str] | None = None) -> None:
        self._tokens = dict(tokens)
        self._scopes = list(scopes or [])

    async def verify_token(self, token: str) -> AccessToken | None:
        identity = self._tokens.get(token)
        if identity is None:
            return None
        return AccessToken(token=token, client_id=identity, scopes=self._scopes)


class _MemoryEvents(EventStore):
    """An in-memory event store (bounded) so SSE clients can resume with Last-Event-ID."""

    def __init__(self, limit: int = 4096) -> None:
        self._events: dict[str, tuple[str, JSONRPCMessage | None]] = {}
        self._limit = limit
        self._n = 0

    async def store_event(self, stream_id: str, message: JSONRPCMessage | None) -> str:
        self._n += 1
        event_id = f"{stream_id}:{self._n:012d}"
        self._events[event_id] = (stream_id, message)
        while len(self._events) > self._limit:
            self._events.pop(next(iter(self._events)))
        return event_id

    async def replay_events_after(
        self, last_event_id: str, send_callback: EventCallback
    ) -> str | None:
        if last_event_id not in self._events:
            return None
        stream_id = self._events[last_event_id][0]
        after = False
        for event_id, (sid, message) in list(self._events.items()):
            if after and sid == stream_id and message is not None:
                await send_callback(EventMessage(message, event_id))
            after = after or event_id == last_event_id
        return stream_id


class HTTPServing:
    """``run_stdio``, ``serve_http`` and ``run_http`` of an exposure."""

    server: Server[Any]
    _listen_http: ListenHandler

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
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        path: str = "/mcp",
        tokens: Mapping[str, str] | TokenVerifier | None = None,
        resumable: bool = False,
    ) -> AsyncIterator[str]:
        """Serve over streamable HTTP while the block runs; yields the URL.

        Binds to 127.0.0.1 unless told otherwise; ``port=0`` picks a free port.
        ``tokens`` requires a bearer token (see the module docs). ``resumable`` keeps
        the last 4,096 stream events so a client that lost its SSE stream resumes with
        ``Last-Event-ID``; it costs about 8% per call (responses go as SSE events).

        Example::

            async with server.serve_http(port=0) as url:
                async with mcp.Client(url) as client: ...
        """
        async with self._http(host, port, path, tokens, resumable) as (url, _):
            yield url

    async def run_http(
        self,
        host: str = "127.0.0.1",
        port: int = 8000,
        *,
        path: str = "/mcp",
        on_ready: Callable[[str], None] | None = None,
        tokens: Mapping[str, str] | TokenVerifier | None = None,
        resumable: bool = False,
    ) -> None:
        """Serve over streamable HTTP until the server is stopped (Ctrl-C) or cancelled.

        Example::

            await server.run_http("127.0.0.1", 8000, on_ready=print)
        """
        async with self._http(host, port, path, tokens, resumable) as (url, task):
            if on_ready is not None:
                on_ready(url)
            await task

    def _app(self, host: str, bound: int, path: str, tokens: Any, resumable: bool) -> Any:
        shown = f"[{host}]" if ":" in host else host
        base = f"http://{shown}:{bound}"
        options: dict[str, Any] = {
            "streamable_http_path": path,
            "host": host,
        }
        if resumable:
            options["event_store"] = _MemoryEvents()
            options["retry_interval"] = RETRY_MS
        if tokens is not None:
            from mcp.server.auth.settings import AuthSettings
            from pydantic import AnyHttpUrl

            verifier = StaticTokens(tokens) if isinstance(tokens, Mapping) else tokens
            options["token_verifier"] = verifier
            options["auth"] = AuthSettings(
                issuer_url=AnyHttpUrl(base),
                resource_server_url=AnyHttpUrl(base + path),
                validate_token_resource=False,  # the verifier checks the audience, if any
            )
        return self.server.streamable_http_app(**options)

    @contextlib.asynccontextmanager
    async def _http(
        self, host: str, port: int, path: str, tokens: Any, resumable: bool = False
    ) -> AsyncIterator[tuple[str, asyncio.Task[None]]]:
        import uvicorn

        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # asyncio: TCP_NODELAY
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            raise ConfigurationError(f"cannot listen on {host}:{port}: {exc}") from None
        bound = sock.getsockname()[1]
        try:
            app = self._app(host, bound, path, tokens, resumable)
        except BaseException:
            sock.close()
            raise
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
