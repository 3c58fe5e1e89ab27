"""The dashboard's web server: a Starlette app on uvicorn, a token on every request.

:class:`Dashboard` is an async context manager: it binds (127.0.0.1 and a free port
by default), starts the :class:`~agentcomm.dashboard.live.Live` loops and the HTTP
server as tasks it owns, and stops both on exit. Every request (the page, its
scripts, the API and the event stream) must carry the random token of the printed
URL (``?token=`` or the ``X-Dashboard-Token`` header), else it gets 403. Actions
(redrive or discard a dead letter, delete a blackboard key) answer 403 unless the
dashboard was started with ``allow_actions``; they run as the ``operator`` identity,
so the runtime's access policy decides.

Example::

    async with Dashboard(RuntimeSource(rt)) as dash:
        print(dash.url)
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Generator
from importlib import resources
from typing import TYPE_CHECKING, Any

import msgspec

from agentcomm.core.errors import ConfigurationError, PermissionDenied
from agentcomm.dashboard.live import Live
from agentcomm.dashboard.traces import waterfall

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response

    from agentcomm.dashboard.sources import RuntimeSource

    Handler = Callable[[Request], Awaitable[Response]]

__all__ = ["Dashboard", "routes"]

#: Seconds between two keep-alive comments on an idle event stream.
PING = 15.0


def _starlette() -> Any:
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise ConfigurationError(
            "the dashboard needs its extra: pip install 'agentcomm[dashboard]'"
        ) from exc


class Dashboard:
    """A live web dashboard over a source; ``async with`` runs it, ``url`` opens it.

    Example::

        async with Dashboard(RuntimeSource(rt), port=8321) as dash:
            print(dash.url)      # http://127.0.0.1:8321/?token=...
    """

    def __init__(
        self,
        source: RuntimeSource,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
        allow_actions: bool = False,
    ) -> None:
        _starlette()
        self.source = source
        self.host = host
        self.port = port
        self.token = token or secrets.token_urlsafe(24)
        self.allow_actions = allow_actions
        self.live = Live(source)
        self._closing = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self._server: Any = None

    @property
    def url(self) -> str:
        """The page's address, with the token (print it; whoever has it may look)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/?token={self.token}"

    async def __aenter__(self) -> Dashboard:
        import uvicorn

        class _Server(uvicorn.Server):
            @contextlib.contextmanager
            def capture_signals(self) -> Generator[None, None, None]:
                yield  # the program owns its signals, not the dashboard

        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        sock.listen(64)
        sock.setblocking(False)
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app(),
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=1,
        )
        self._server = _Server(config)
        await self.source.start()
        self._tasks = [
            asyncio.create_task(self._server.serve(sockets=[sock]), name="dashboard-http"),
            asyncio.create_task(self.live.run(), name="dashboard-live"),
        ]
        while not self._server.started:  # serving before the URL is handed out
            if self._tasks[0].done():
                await self._tasks[0]  # raises what stopped it
                raise ConfigurationError("the dashboard's HTTP server stopped at start")
            await asyncio.sleep(0.01)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._closing.set()
        for c in self.live.hub.clients:
            c.ready.set()  # every event stream ends
        if self._server is not None:
            self._server.should_exit = True
        http, live = self._tasks
        live.cancel()
        for t in (http, live):
            with contextlib.suppress(asyncio.CancelledError):
                await t
        await self.source.aclose()

    # -- the app ----------------------------------------------------------------------
    def app(self) -> Starlette:
        """The Starlette application (every route checks the token)."""
        from starlette.applications import Starlette
        from starlette.routing import Route

        return Starlette(routes=[Route(p, self._guarded(h), methods=m) for p, h, m in routes(self)])

    def _guarded(
        self, handler: Callable[[Request], Awaitable[Response]]
    ) -> Callable[[Request], Awaitable[Response]]:
        from starlette.responses import PlainTextResponse

        async def endpoint(request: Request) -> Response:
            given = request.query_params.get("token") or request.headers.get(
                "x-dashboard-token", ""
            )
            if not secrets.compare_digest(given.encode(), self.token.encode()):
                return PlainTextResponse(
                    "403: this dashboard needs the token of the URL it printed\n", 403
                )
            try:
                return await handler(request)
            except PermissionDenied as exc:
                return _json({"error": str(exc)}, 403)
            except ConfigurationError as exc:
                return _json({"error": str(exc)}, 404)

        return endpoint

    def static(self, name: str) -> bytes:
        """A file shipped with the page (``index.html``, ``app.js``, ...)."""
        return (resources.files("agentcomm.dashboard") / "static" / name).read_bytes()

    def trace(self, trace_id: str) -> dict[str, Any]:
        """One trace as a waterfall (see :func:`~agentcomm.dashboard.traces.waterfall`)."""
        tree = waterfall(self.live.traces.get(trace_id))
        tree["trace"] = trace_id
        return tree


def _json(data: Any, status: int = 200) -> Response:
    from starlette.responses import Response

    return Response(msgspec.json.encode(data), status, media_type="application/json")


def routes(dash: Dashboard) -> list[tuple[str, Handler, list[str]]]:
    """Every route of the dashboard as ``(path, handler, methods)``.

    Example::

        routes(dash)[0][0]   # '/'
    """
    live = dash.live
    source = dash.source
    static_types = {"app.js": "text/javascript", "flow.js": "text/javascript"}
    static_types["style.css"] = "text/css"

    from starlette.responses import Response

    async def index(request: Request) -> Response:
        html = dash.static("index.html").decode()
        html = html.replace("{{TOKEN}}", dash.token)
        return Response(html, media_type="text/html", headers={"cache-control": "no-store"})

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in static_types:
            return Response("not found\n", 404, media_type="text/plain")
        return Response(dash.static(name), media_type=static_types[name])

    async def events(request: Request) -> Response:
        from starlette.responses import StreamingResponse

        return StreamingResponse(
            _stream(dash),
            media_type="text/event-stream",
            headers={"cache-control": "no-store", "x-accel-buffering": "no"},
        )

    async def snapshot(request: Request) -> Response:
        return _json(live.last_stats or await source.snapshot())

    async def recent(request: Request) -> Response:
        return _json(list(live.recent))

    async def traces(request: Request) -> Response:
        return _json(live.traces.summaries(int(request.query_params.get("limit", 100))))

    async def trace(request: Request) -> Response:
        return _json(dash.trace(request.path_params["trace"]))

    async def dead_letters(request: Request) -> Response:
        return _json(await source.dead_letters())

    async def board(request: Request) -> Response:
        return _json(await source.board_list(request.query_params.get("prefix", "")))

    async def history(request: Request) -> Response:
        key = request.query_params.get("key", "")
        if not key:
            raise ConfigurationError("give a key: /api/board/history?key=KEY")
        return _json(await source.board_history(key))

    async def tasks(request: Request) -> Response:
        return _json(await source.tasks())

    def action(do: Callable[[Request], Awaitable[dict[str, Any]]]) -> Handler:
        async def run(request: Request) -> Response:
            if not dash.allow_actions:
                return _json({"error": "read-only: start the dashboard with --allow-actions"}, 403)
            return _json(await do(request))

        return run

    async def redrive(request: Request) -> dict[str, Any]:
        return await source.redrive(int(request.path_params["seq"]))

    async def discard(request: Request) -> dict[str, Any]:
        return await source.discard(int(request.path_params["seq"]))

    async def delete_key(request: Request) -> dict[str, Any]:
        key = request.query_params.get("key", "")
        if not key:
            raise ConfigurationError("give a key: /api/board/delete?key=KEY")
        return await source.board_delete(key)

    get, post = ["GET"], ["POST"]
    return [
        ("/", index, get),
        ("/static/{name}", static, get),
        ("/events", events, get),
        ("/api/snapshot", snapshot, get),
        ("/api/recent", recent, get),
        ("/api/traces", traces, get),
        ("/api/trace/{trace}", trace, get),
        ("/api/dead-letters", dead_letters, get),
        ("/api/dead-letters/{seq:int}/redrive", action(redrive), post),
        ("/api/dead-letters/{seq:int}/discard", action(discard), post),
        ("/api/board", board, get),
        ("/api/board/history", history, get),
        ("/api/board/delete", action(delete_key), post),
        ("/api/tasks", tasks, get),
    ]


def _sse(kind: str, data: bytes) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + data + b"\n\n"


async def _stream(dash: Dashboard) -> AsyncIterator[bytes]:
    """One browser's event stream: its own bounded queue, drained as fast as it reads."""
    live = dash.live
    client = live.hub.connect()
    try:
        hello = {
            "scope": dash.source.scope,
            "allow_actions": dash.allow_actions,
            "operator": dash.source.operator,
        }
        yield _sse("hello", msgspec.json.encode(hello))
        if live.last_stats is not None:
            yield _sse("stats", msgspec.json.encode(live.last_stats))
        dropped = 0
        while not dash._closing.is_set():
            try:
                async with asyncio.timeout(PING):
                    await client.ready.wait()
            except TimeoutError:
                yield b": ping\n\n"
                continue
            for kind, data in client.take():
                yield _sse(kind, data)
            if client.dropped != dropped:
                dropped = client.dropped
                yield _sse("drops", msgspec.json.encode({"dropped": dropped}))
    finally:
        live.hub.disconnect(client)
