"""Consuming an A2A agent: its card read, a proxy agent calling it (needs the ``a2a`` extra).

Made by :meth:`A2A.connect <agentcomm.a2a.service.A2A.connect>`. The SDK's client
speaks the protocol (it picks the binding and version the card offers). The proxy
agent has one handler per skill, of the kind the card's ``agentcomm:`` tags say
(a foreign skill is a request handler): a request sends a message and waits for
the answer (following the task to its end if the agent makes one); a stream
handler streams it, yielding each artifact part and reporting progress; a task
handler runs a local durable task that mirrors the remote one (progress,
``input-required`` as ``ctx.ask``, cancellation as ``tasks/cancel``). The
credentials go in the headers the card's schemes name, with the W3C trace context
of the calling span.

Example::

    conn = await rt.a2a.connect("concierge", url="http://127.0.0.1:8000/", token="...")
    print(conn.skills)
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import socket
from collections.abc import AsyncIterator, Callable, Mapping
from typing import TYPE_CHECKING, Any

import httpx
import msgspec
from a2a.client import A2ACardResolver, ClientConfig, ClientFactory
from a2a.types import a2a_pb2 as pb
from a2a.utils.errors import A2AError
from google.protobuf import json_format

from agentcomm.a2a.auth import credential_headers
from agentcomm.a2a.card import skills_from_card
from agentcomm.a2a.convert import new_id, parts_of, text_of, value_of
from agentcomm.a2a.errors import A2AProtocolError, from_a2a
from agentcomm.a2a.skills import Skill, SkillKind
from agentcomm.core.errors import AgentCommError, RemoteError, TransportError, ValidationError
from agentcomm.core.schema import Codec, HandlerSpec, inspect_handler
from agentcomm.host.agent import Agent
from agentcomm.host.context import Context
from agentcomm.tasks.declare import DECLARATIONS, TaskSpec

if TYPE_CHECKING:
    from a2a.client import Client

    from agentcomm.host.runtime import Runtime

__all__ = ["A2AConnection"]

logger = logging.getLogger("agentcomm.a2a")

_TERMINAL = {
    pb.TASK_STATE_COMPLETED,
    pb.TASK_STATE_FAILED,
    pb.TASK_STATE_CANCELED,
    pb.TASK_STATE_REJECTED,
}
_ASKING = {pb.TASK_STATE_INPUT_REQUIRED, pb.TASK_STATE_AUTH_REQUIRED}


async def _request_template(arguments: dict[str, Any], ctx: Context) -> Any:
    raise NotImplementedError  # pragma: no cover - only its signature is used


async def _stream_template(arguments: dict[str, Any], ctx: Context) -> AsyncIterator[Any]:
    raise NotImplementedError  # pragma: no cover - only its signature is used
    yield None


def _spec(skill: Skill, fn: Callable[..., Any], *, streams: bool) -> HandlerSpec:
    """A handler spec whose whole payload (a JSON object) is the ``arguments``, checked
    against the skill's input schema (when the card has one) before anything is sent."""
    name = skill.id
    template = inspect_handler(_stream_template if streams else _request_template, name)
    codec: Codec
    try:
        from agentcomm.tools.mcp_handlers import SchemaCodec

        codec = SchemaCodec(dict(skill.input_schema), f"{name} arguments")
    except ImportError:  # no jsonschema: the remote agent checks
        codec = Codec(dict[str, Any], name=f"{name} arguments")
    decode = codec.decode
    description = skill.description

    def decode_args(raw: msgspec.Raw | bytes) -> dict[str, Any]:
        return {"arguments": {} if bytes(raw) == b"null" else decode(raw)}

    changes: dict[str, Any] = {
        "fn": fn,
        "input": codec,
        "description": description,
        "decode_args": decode_args,
        "decode_positional": None,
    }
    return dataclasses.replace(template, **changes)


def _value(parts: Any) -> Any:
    values = [
        p.text if p.WhichOneof("content") == "text" else value_of(p)
        for p in parts
        if p.WhichOneof("content") in ("text", "data")
    ]
    if len(values) == 1:
        return values[0]
    return values or None


def _progress(status: pb.TaskStatus) -> tuple[float, float | None, str | None] | None:
    if not status.HasField("message"):
        return None
    meta = json_format.MessageToDict(status.message.metadata).get("agentcomm.progress")
    text = text_of(status.message.parts) or None
    if isinstance(meta, dict) and "done" in meta:
        total = meta.get("total")
        return float(meta["done"]), float(total) if total is not None else None, text
    return None


class A2AConnection:
    """A remote A2A agent and the proxy agent that calls it (``await rt.a2a.connect(...)``).

    ``card`` is the agent card as JSON, ``skills`` what it offers, ``agent`` the proxy.

    Example::

        conn = await rt.a2a.connect("remote", url=url)
        print([s.id for s in conn.skills])
    """

    def __init__(
        self,
        runtime: Runtime,
        name: str,
        url: str,
        *,
        token: str | None,
        api_key: str | None,
        timeout: float,
        kinds: Mapping[str, SkillKind] | None = None,
    ) -> None:
        self.runtime = runtime
        self.name = name
        self.url = url
        self._token = token
        self._api_key = api_key
        self.timeout = timeout
        self._kinds = dict(kinds or {})
        self.card: dict[str, Any] = {}
        self.skills: list[Skill] = []
        self.agent = Agent(name)
        self.agent.proxy = True
        self._http: httpx.AsyncClient | None = None
        self._client: Client | None = None
        self._headers: dict[str, str] = {}

    async def _hook(self, request: httpx.Request) -> None:
        for k, v in self._headers.items():
            request.headers.setdefault(k, v)
        tracing = self.runtime.tracing
        if tracing is not None:
            tp, ts = tracing.current_traceparent()
            if tp:
                request.headers["traceparent"] = tp
                if ts:
                    request.headers["tracestate"] = ts

    async def open(self, card_path: str | None = None) -> None:
        """Read the card, make the SDK client and install the proxy's handlers."""
        # TCP_NODELAY: httpx writes headers and body apart; Nagle would add 40 ms a call
        nodelay = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
        self._http = httpx.AsyncClient(
            timeout=self.timeout,
            event_hooks={"request": [self._hook]},
            transport=httpx.AsyncHTTPTransport(socket_options=nodelay),
        )
        try:
            resolver = A2ACardResolver(self._http, self.url)
            card = await (
                resolver.get_agent_card(relative_card_path=card_path)
                if card_path
                else resolver.get_agent_card()
            )
        except (A2AError, httpx.HTTPError) as exc:
            await self._http.aclose()
            raise TransportError(f"cannot read the A2A agent card at {self.url}: {exc}") from None
        self.card = json_format.MessageToDict(card)
        self._headers = credential_headers(
            self.card.get("securitySchemes") or {}, token=self._token, api_key=self._api_key
        )
        config = ClientConfig(streaming=True, httpx_client=self._http)
        self._client = ClientFactory(config).create(card)
        self.skills = [
            dataclasses.replace(s, kind=self._kinds[s.id]) if s.id in self._kinds else s
            for s in skills_from_card(self.card)
        ]
        self._install()

    def _install(self) -> None:
        agent = self.agent
        for skill in self.skills:
            if skill.kind == "task":
                spec = _spec(skill, self._task_fn(skill), streams=False)
                agent.declare(DECLARATIONS, TaskSpec(skill.id, spec, "fail", 1))
            elif skill.kind == "stream":
                agent.handlers[skill.id] = _spec(skill, self._stream_fn(skill), streams=True)
            else:
                agent.handlers[skill.id] = _spec(skill, self._request_fn(skill), streams=False)

    # -- calls ----------------------------------------------------------------------------
    def _message(
        self, skill: Skill, arguments: dict[str, Any], task_id: str = ""
    ) -> pb.SendMessageRequest:
        if set(arguments) == {"text"} and isinstance(arguments["text"], str):
            parts = parts_of(arguments["text"])
        else:
            parts = parts_of(arguments)
        msg = pb.Message(message_id=new_id(), role=pb.ROLE_USER, parts=parts, task_id=task_id)
        msg.metadata.update({"skill": skill.id})
        return pb.SendMessageRequest(message=msg)

    def _events(self, req: pb.SendMessageRequest) -> AsyncIterator[pb.StreamResponse]:
        assert self._client is not None
        return self._client.send_message(req)

    def _fail(self, exc: BaseException, task_id: str = "") -> AgentCommError:
        if isinstance(exc, A2AError):
            err = from_a2a(exc, self.url, task_id=task_id)
            if isinstance(err, ValidationError):  # inside a handler it would read as ours
                return A2AProtocolError(self.url, -32602, "InvalidParams", str(err))
            return err
        return TransportError(f"A2A agent {self.url}: {exc}")

    def _request_fn(self, skill: Skill) -> Callable[..., Any]:
        async def call(arguments: dict[str, Any], ctx: Context) -> Any:
            result: Any = None
            try:
                async for ev in self._events(self._message(skill, arguments)):
                    kind = ev.WhichOneof("payload")
                    if kind == "message":
                        return _value(ev.message.parts)
                    if kind == "task" and ev.task.artifacts:
                        result = _value(ev.task.artifacts[-1].parts)
                    if kind == "artifact_update":
                        result = _value(ev.artifact_update.artifact.parts)
                    state = _state(ev)
                    if state == pb.TASK_STATE_FAILED:
                        raise RemoteError(self.url, "A2ATaskFailed", _status_text(ev))
                    if state is not None and (state in _TERMINAL or state in _ASKING):
                        break
            except (A2AError, httpx.HTTPError) as exc:
                raise self._fail(exc) from None
            return result

        return call

    def _stream_fn(self, skill: Skill) -> Callable[..., Any]:
        async def stream(arguments: dict[str, Any], ctx: Context) -> AsyncIterator[Any]:
            try:
                async for ev in self._events(self._message(skill, arguments)):
                    kind = ev.WhichOneof("payload")
                    if kind == "message":
                        for p in ev.message.parts:
                            yield _value([p])
                        return
                    if kind == "artifact_update":
                        for p in ev.artifact_update.artifact.parts:
                            yield _value([p])
                    if kind == "status_update":
                        report = _progress(ev.status_update.status)
                        if report is not None:
                            await ctx.progress(*report)
                    state = _state(ev)
                    if state == pb.TASK_STATE_FAILED:
                        raise RemoteError(self.url, "A2ATaskFailed", _status_text(ev))
                    if state in _TERMINAL:
                        return
            except (A2AError, httpx.HTTPError) as exc:
                raise self._fail(exc) from None

        return stream

    def _task_fn(self, skill: Skill) -> Callable[..., Any]:
        async def run(arguments: dict[str, Any], ctx: Context) -> Any:
            req = self._message(skill, arguments)
            remote = ""
            result: Any = None
            try:
                while True:
                    asked: pb.TaskStatus | None = None
                    async for ev in self._events(req):
                        kind = ev.WhichOneof("payload")
                        if kind == "message":
                            return _value(ev.message.parts)
                        if kind == "task":
                            remote = ev.task.id
                        if kind == "artifact_update":
                            result = _value(ev.artifact_update.artifact.parts)
                        status = _status(ev)
                        if status is None:
                            continue
                        report = _progress(status)
                        if report is not None:
                            await ctx.progress(*report)
                        if status.state == pb.TASK_STATE_FAILED:
                            raise RemoteError(self.url, "A2ATaskFailed", _status_text(ev))
                        if status.state == pb.TASK_STATE_CANCELED:
                            raise RemoteError(
                                self.url, "A2ATaskCanceled", f"task {remote} was canceled there"
                            )
                        if status.state in _TERMINAL:
                            return result
                        if status.state in _ASKING:
                            asked = status
                            break
                    if asked is None:
                        return result
                    answer = await ctx.ask(
                        text_of(asked.message.parts) or "input required", returns=Any
                    )
                    req = self._message(
                        skill, {"text": answer} if isinstance(answer, str) else answer, remote
                    )
            except asyncio.CancelledError:
                if remote:
                    await self._cancel(remote)
                raise
            except (A2AError, httpx.HTTPError) as exc:
                raise self._fail(exc, remote) from None

        return run

    async def _cancel(self, task_id: str) -> None:
        assert self._client is not None
        try:
            async with asyncio.timeout(5.0):
                await asyncio.shield(self._client.cancel_task(pb.CancelTaskRequest(id=task_id)))
        except (A2AError, httpx.HTTPError, TimeoutError) as exc:
            logger.warning("A2A %s: cancelling task %s failed: %s", self.url, task_id, exc)

    # -- the A2A operations, for callers who want them -----------------------------------
    async def get_task(self, task_id: str, history_length: int | None = None) -> dict[str, Any]:
        """``GetTask`` on the remote agent: the task as JSON."""
        assert self._client is not None
        req = pb.GetTaskRequest(id=task_id)
        if history_length is not None:
            req.history_length = history_length
        try:
            task = await self._client.get_task(req)
        except (A2AError, httpx.HTTPError) as exc:
            raise self._fail(exc, task_id) from None
        out: dict[str, Any] = json_format.MessageToDict(task)
        return out

    async def cancel_task(self, task_id: str) -> dict[str, Any]:
        """``CancelTask`` on the remote agent: the task as JSON."""
        assert self._client is not None
        try:
            task = await self._client.cancel_task(pb.CancelTaskRequest(id=task_id))
        except (A2AError, httpx.HTTPError) as exc:
            raise self._fail(exc, task_id) from None
        out: dict[str, Any] = json_format.MessageToDict(task)
        return out

    async def aclose(self) -> None:
        """Close the client (the runtime does it at exit)."""
        client, http = self._client, self._http
        self._client = self._http = None
        if client is not None:
            await client.close()
        if http is not None:
            await http.aclose()


def _status(ev: pb.StreamResponse) -> pb.TaskStatus | None:
    kind = ev.WhichOneof("payload")
    if kind == "task":
        return ev.task.status
    if kind == "status_update":
        return ev.status_update.status
    return None


def _state(ev: pb.StreamResponse) -> int | None:
    status = _status(ev)
    return status.state if status is not None else None


def _status_text(ev: pb.StreamResponse) -> str:
    status = _status(ev)
    if status is not None and status.HasField("message"):
        return text_of(status.message.parts)
    return "the task failed"
