"""Exposing an agent over A2A: the card, the HTTP app, the server (needs the ``a2a`` extra).

Made by :meth:`A2A.expose <agentcomm.a2a.service.A2A.expose>`. The SDK serves the
protocol: JSON-RPC at ``/`` in spec 1.0 and, on the same URL, the 0.3 method names
(``message/send``...); the agent card at ``/.well-known/agent-card.json`` (1.0 fields
with the 0.3 ones merged in); HTTP+JSON at the same URL in both versions
(``/message:send``, ``/tasks/{id}``...; 0.3's ``/v1/...``).
:class:`~agentcomm.a2a.handler.AgentRequestHandler` does the work. An ASGI layer
in front bounds the body size and, when the exposure has auth schemes, refuses a
call without a valid credential (HTTP 401) and tells the handler who called: the
caller's identity is the agentcomm agent the calls are made as, so the runtime's
access policy applies to it by name.

Example::

    async with await rt.a2a.expose("concierge", port=8000) as exposure:
        print(exposure.url)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import msgspec
import uvicorn
from a2a.server.routes import (
    DefaultServerCallContextBuilder,
    create_agent_card_routes,
    create_jsonrpc_routes,
    create_rest_routes,
)
from a2a.types import a2a_pb2 as pb
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse

from agentcomm.a2a.auth import Auth
from agentcomm.a2a.handler import AgentRequestHandler
from agentcomm.a2a.skills import Skill, skills_of
from agentcomm.core.errors import ConfigurationError, ValidationError
from agentcomm.core.names import check_name
from agentcomm.tasks.declare import task_specs

if TYPE_CHECKING:
    from a2a.server.context import ServerCallContext
    from starlette.requests import Request
    from starlette.types import ASGIApp, Receive, Scope, Send

    from agentcomm.host.agent import Agent
    from agentcomm.host.runtime import Runtime

__all__ = ["CARD_PATH", "REST_PREFIX", "A2AExposure"]

logger = logging.getLogger("agentcomm.a2a")

CARD_PATH = "/.well-known/agent-card.json"
#: Where the HTTP+JSON binding is served below the base URL: at it, beside JSON-RPC
#: (its paths, ``/message:send``, ``/tasks/{id}``..., never clash with ``POST /``).
REST_PREFIX = ""
_GATEWAY = "a2a-gateway"


class _Context(DefaultServerCallContextBuilder):
    """The SDK's context, plus the caller's identity and a version for 1.0 method names.

    A call without ``A2A-Version`` is 0.3 to the SDK; one that names a 1.0 method
    (``SendMessage``: 0.3's are ``message/send``) or a 1.0 HTTP+JSON path (0.3's
    start with ``/v1/``) can only mean 1.0, so it is taken as such (the JSON-RPC body
    is parsed already: Starlette keeps it on the request).
    """

    def build(self, request: Request) -> ServerCallContext:
        ctx = super().build(request)
        ctx.state["identity"] = request.scope.get("agentcomm.identity")
        headers = ctx.state.get("headers")
        body = getattr(request, "_json", None)
        if isinstance(body, dict) and isinstance(body.get("params"), dict):
            ctx.state["params"] = body["params"]  # as sent: enums the protos would zero
        elif request.query_params:  # HTTP+JSON's GETs carry them in the query
            ctx.state["params"] = dict(request.query_params)
        if isinstance(headers, dict) and not headers.get("a2a-version"):
            method = body.get("method") if isinstance(body, dict) else None
            path = request.url.path
            if path == "/" and isinstance(method, str) and "/" not in method:
                headers["a2a-version"] = "1.0"
            elif path != "/" and not path.startswith("/v1/"):  # HTTP+JSON 1.0's paths
                headers["a2a-version"] = "1.0"
        return ctx


class _Front:
    """ASGI: the body-size bound and the auth check, in front of the SDK's routes."""

    def __init__(self, app: ASGIApp, exposure: A2AExposure) -> None:
        self.app = app
        self.x = exposure

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] != CARD_PATH and self.x.auth:
            headers = {
                k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]
            }
            identity = None
            for auth in self.x.auth:
                identity = auth.identify(headers)
                if identity is not None:
                    break
            if identity is None:
                schemes = ", ".join(a.scheme_name for a in self.x.auth)
                resp = JSONResponse(
                    {"error": f"authentication required ({schemes})"},
                    status_code=401,
                    headers={"WWW-Authenticate": self.x.auth[0].challenge},
                )
                await resp(scope, receive, send)
                return
            scope["agentcomm.identity"] = identity
        limit = self.x.max_body
        seen = 0

        async def bounded() -> Any:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise HTTPException(status_code=413)
            return message

        await self.app(scope, bounded, send)


class A2AExposure:
    """One agent served over A2A on HTTP; made by ``await rt.a2a.expose(...)``.

    ``url`` is where it listens; ``card`` the agent card it serves (an SDK
    ``AgentCard``). Close it with ``await exposure.close()`` or ``async with``.

    Example::

        exposure = await rt.a2a.expose("concierge")
        print(exposure.url, [s.id for s in exposure.skills.values()])
        await exposure.close()
    """

    def __init__(
        self,
        runtime: Runtime,
        agent: Agent,
        *,
        host: str,
        port: int,
        default: str | None,
        auth: Sequence[Auth],
        description: str | None,
        version: str,
        timeout: float | None,
        max_body: int,
        public_url: str | None,
        send_wait: float | None = None,
        bindings: Sequence[str] = ("JSONRPC", "HTTP+JSON"),
    ) -> None:
        self.runtime = runtime
        self.agent = agent
        self.agent_name = agent.name
        self.host = host
        self.port = port
        self.auth = list(auth)
        self.timeout = timeout
        #: How long a blocking SendMessage waits for its task to end or ask (None: until then).
        self.send_wait = send_wait
        unknown = set(bindings) - {"JSONRPC", "HTTP+JSON"}
        if unknown or "JSONRPC" not in bindings:
            raise ConfigurationError(
                f"bindings: JSONRPC and optionally HTTP+JSON, got {sorted(bindings)}"
            )
        self.bindings = tuple(bindings)
        self.max_body = max_body
        self.version = version
        self.description = description
        self.skills: dict[str, Skill] = {s.id: s for s in skills_of(agent)}
        if not self.skills:
            raise ConfigurationError(f"agent {agent.name!r} has no handlers to expose over A2A")
        if default is not None and default not in self.skills:
            raise ConfigurationError(
                f"default skill {default!r} is not one of {sorted(self.skills)}"
            )
        self.default_skill = default or (next(iter(self.skills)) if len(self.skills) == 1 else None)
        self._public_url = public_url
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None
        self._sock: socket.socket | None = None
        self.handler = AgentRequestHandler(self)
        self.card: pb.AgentCard = pb.AgentCard()

    @property
    def url(self) -> str:
        """The base URL clients use (the JSON-RPC endpoint; the card is below it)."""
        return self._public_url or f"http://{self.host}:{self.port}/"

    # -- what the handler uses ------------------------------------------------------------
    def caller(self, context: ServerCallContext) -> Any:
        """The agentcomm agent the calls of this A2A caller are made as."""
        identity = context.state.get("identity") or _GATEWAY
        agent = self.runtime.get_agent(identity)
        if agent is None:
            agent = self.runtime.agent(check_name("agent", identity))
        return agent

    def check_payload(self, skill: Skill, payload: Any) -> None:
        """Validate a payload here when the agent's handler is known (InvalidParams early)."""
        spec = self.agent.handlers.get(skill.id)
        if spec is None:
            spec = next((t.handler for t in task_specs(self.agent) if t.name == skill.id), None)
        if spec is None:
            return
        try:
            spec.decode_args(msgspec.json.encode(payload))
        except ValidationError:
            raise
        except Exception as exc:
            raise ValidationError(f"skill {skill.id!r}: {exc}") from None

    @contextlib.contextmanager
    def traced(self, context: ServerCallContext, operation: str) -> Iterator[None]:
        """A server span continuing the caller's W3C trace context (tracing on)."""
        tracing = self.runtime.tracing
        if tracing is None:
            yield
            return
        headers = context.state.get("headers") or {}
        parent = headers.get("traceparent") or ""
        attrs = {"rpc.system": "a2a", "rpc.method": operation}
        with tracing.span("a2a", self.agent_name, kind="server", parent=parent, attributes=attrs):
            yield

    # -- serving --------------------------------------------------------------------------
    def app(self) -> Starlette:
        """The ASGI app (card, JSON-RPC and HTTP+JSON in 1.0 and 0.3), bound and auth in front."""
        from agentcomm.a2a.card import build_card

        self.card = build_card(self)
        ctx = _Context()
        routes: list[Any] = [
            *create_agent_card_routes(self.card, card_url=CARD_PATH),
            *create_jsonrpc_routes(self.handler, "/", context_builder=ctx, enable_v0_3_compat=True),
        ]
        if "HTTP+JSON" in self.bindings:
            routes += create_rest_routes(
                self.handler, context_builder=ctx, enable_v0_3_compat=True, path_prefix=REST_PREFIX
            )
        app = Starlette(routes=routes)
        app.add_middleware(_Front, exposure=self)
        return app

    async def start(self) -> None:
        """Listen (port 0: a free one) and return once the server accepts connections."""
        # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY only on such sockets; without it
        # every answer on a kept-alive connection waits 40 ms for a delayed ACK
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app(), log_level="warning", lifespan="off", timeout_graceful_shutdown=2
        )
        self._server = uvicorn.Server(config)
        self._task = self.runtime.task_group.create_task(self._server.serve(sockets=[sock]))
        while not self._server.started:
            if self._task.done():
                sock.close()
                await self._task  # raises what stopped it
                raise ConfigurationError(f"A2A server on {self.url} stopped at start")
            await asyncio.sleep(0.01)
        self._sock = sock

    async def close(self) -> None:
        """Stop serving (open streams are ended); idempotent."""
        server, task = self._server, self._task
        self._server = self._task = None
        if server is None or task is None:
            return
        server.should_exit = True
        try:
            await asyncio.wait_for(task, 5.0)
        except TimeoutError:
            server.force_exit = True
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        finally:
            if self._sock is not None:
                self._sock.close()
                self._sock = None

    async def __aenter__(self) -> A2AExposure:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def serve_forever(self) -> None:
        """Wait until the server stops (the CLI's ``a2a serve``)."""
        if self._task is not None:
            await asyncio.shield(self._task)
