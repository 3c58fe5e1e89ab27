"""An exposure's resources, prompts and completions (internal; part of :class:`MCPExposure`).

A prompt function that takes ``ctx: Context`` gets one as a handler would: over MCP its
``ctx.ask``/``ctx.sample``/``ctx.roots`` reach the client (``input_required`` rounds of
``prompts/get`` on the 2026-07-28 protocol).

Resources come from two places: the agents' ``@agent.resource`` declarations
(static URIs and ``{variable}`` templates) and blackboard prefixes published with
``expose(..., board=[...])`` as ``board://<key>`` (template ``board://{key}``),
read as the caller's identity so the policy's read rules apply. A subscription to
a ``board://`` URI is a blackboard watch that sends ``notifications/resources/updated``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

import mcp_types as mt
import msgspec
from mcp.shared.exceptions import MCPError

from agentcomm.core.callers import ClientUnsupported
from agentcomm.core.envelope import Envelope, new_id
from agentcomm.core.errors import AgentCommError, PermissionDenied, ValidationError
from agentcomm.host.context import CALLER_HEADER
from agentcomm.tools.content import Resource
from agentcomm.tools.declare import PromptSpec, ResourceSpec, prompt_specs, resource_specs
from agentcomm.tools.mcp_calls import MCPCalls, input_required, missing_capability
from agentcomm.tools.mcp_content import prompt_messages, to_contents

if TYPE_CHECKING:
    from mcp.server.context import ServerRequestContext

    from agentcomm.host.agent import Agent

__all__ = ["BOARD_SCHEME", "BoardLike", "RESOURCE_NOT_FOUND", "Surface"]

logger = logging.getLogger("agentcomm.mcp")

#: The JSON-RPC error code MCP uses for a resource that does not exist.
RESOURCE_NOT_FOUND = -32002
BOARD_SCHEME = "board://"
_MAX_LISTED = 1000
_MAX_SUBSCRIPTIONS = 256
_TEXTUAL = ("text/", "application/json")


class BoardLike(Protocol):
    """What the exposure uses of a blackboard (``agentcomm.Blackboard`` as one author)."""

    async def keys(self, prefix: str = "") -> list[str]: ...

    async def read(self, key: str, *, type: Any = None) -> Any: ...

    async def subscribe(self, prefix: str, callback: Callable[[Any], Any]) -> Any: ...


def _invalid(msg: str) -> MCPError:
    return MCPError(mt.INVALID_PARAMS, msg)


class Surface:
    """resources/*, prompts/* and completion/complete for a set of agents."""

    def __init__(
        self,
        agents: list[Agent],
        *,
        board: Mapping[str, str],
        board_for: Callable[[str], BoardLike] | None,
        identity: Callable[[ServerRequestContext[Any]], str],
        calls: MCPCalls | None = None,
        sender: str = "mcp-gateway",
        levels: weakref.WeakKeyDictionary[Any, str] | None = None,
        timeout: float | None = None,
    ) -> None:
        self._agents = agents
        self._calls = calls
        self._sender = sender
        self._levels: weakref.WeakKeyDictionary[Any, str] = (
            weakref.WeakKeyDictionary() if levels is None else levels
        )
        self._timeout = timeout
        self._board = dict(board)
        self._board_for = board_for
        self._identity = identity
        self._subs: dict[tuple[int, str], Any] = {}  # (connection id, uri) -> board sub
        self._sessions: dict[tuple[int, str], Any] = {}  # (connection id, uri) -> session

    # -- declarations -----------------------------------------------------------------------
    def prompts(self) -> dict[str, PromptSpec]:
        return {p.name: p for a in self._agents for p in prompt_specs(a)}

    def resources(self) -> list[ResourceSpec]:
        return [r for a in self._agents for r in resource_specs(a)]

    # -- resources ----------------------------------------------------------------------------
    def _mime(self, key: str) -> str | None:
        best = None
        for prefix, mime in self._board.items():
            if key.startswith(prefix) and (best is None or len(prefix) > len(best[0])):
                best = (prefix, mime)
        return None if best is None else best[1]

    async def list_resources(
        self, ctx: ServerRequestContext[Any], params: mt.PaginatedRequestParams | None
    ) -> mt.ListResourcesResult:
        out = [
            mt.Resource(
                name=r.name,
                title=r.title,
                uri=r.uri,
                description=r.description or None,
                mime_type=r.mime_type,
            )
            for r in self.resources()
            if not r.is_template
        ]
        if self._board and self._board_for is not None:
            board = self._board_for(self._identity(ctx))
            for prefix, mime in self._board.items():
                try:
                    keys = await board.keys(prefix)
                except PermissionDenied:
                    continue
                for key in keys[: _MAX_LISTED - len(out)]:
                    out.append(mt.Resource(name=key, uri=BOARD_SCHEME + key, mime_type=mime))
        return mt.ListResourcesResult(resources=out)

    async def list_templates(
        self, ctx: ServerRequestContext[Any], params: mt.PaginatedRequestParams | None
    ) -> mt.ListResourceTemplatesResult:
        out = [
            mt.ResourceTemplate(
                name=r.name,
                title=r.title,
                uri_template=r.uri,
                description=r.description or None,
                mime_type=r.mime_type,
            )
            for r in self.resources()
            if r.is_template
        ]
        if self._board:
            prefixes = ", ".join(sorted(self._board))
            out.append(
                mt.ResourceTemplate(
                    name="blackboard",
                    uri_template=BOARD_SCHEME + "{key}",
                    description=f"blackboard entries under {prefixes}",
                )
            )
        return mt.ListResourceTemplatesResult(resource_templates=out)

    async def read_resource(
        self, ctx: ServerRequestContext[Any], params: mt.ReadResourceRequestParams
    ) -> mt.ReadResourceResult:
        uri = str(params.uri)
        if uri.startswith(BOARD_SCHEME) and self._board:
            return await self._read_board(ctx, uri)
        for spec in self.resources():
            variables = spec.match(uri)
            if variables is None:
                continue
            try:
                value = await spec.call(spec.convert(variables))
            except ValidationError as exc:
                raise _invalid(f"resource {uri!r}: {exc}") from None
            except (ValueError, LookupError) as exc:  # the function refused the argument
                raise _invalid(f"resource {uri!r}: {type(exc).__name__}: {exc}") from None
            return mt.ReadResourceResult(contents=[to_contents(_as_resource(uri, spec, value))])
        raise MCPError(RESOURCE_NOT_FOUND, f"resource not found: {uri}")

    async def _read_board(self, ctx: ServerRequestContext[Any], uri: str) -> mt.ReadResourceResult:
        key = uri[len(BOARD_SCHEME) :]
        mime = self._mime(key)
        if mime is None or self._board_for is None:
            raise MCPError(
                RESOURCE_NOT_FOUND, f"resource not found: {uri} (not a published prefix)"
            )
        board = self._board_for(self._identity(ctx))
        binary = not mime.startswith(_TEXTUAL)
        try:
            entry = await board.read(key, type=bytes if binary else None)
        except PermissionDenied as exc:
            raise _invalid(f"resource {uri!r}: {exc}") from None
        except AgentCommError as exc:  # a bad key, or a value that is not bytes
            raise _invalid(f"resource {uri!r}: {type(exc).__name__}: {exc}") from None
        if entry is None:
            raise MCPError(RESOURCE_NOT_FOUND, f"resource not found: {uri}")
        value = entry.value
        if binary:
            res = Resource(uri=uri, blob=value, mime_type=mime)
        elif isinstance(value, str) and mime.startswith("text/"):
            res = Resource(uri=uri, text=value, mime_type=mime)
        else:
            res = Resource(uri=uri, text=msgspec.json.encode(value).decode(), mime_type=mime)
        return mt.ReadResourceResult(contents=[to_contents(res)])

    async def subscribe(
        self, ctx: ServerRequestContext[Any], params: mt.SubscribeRequestParams
    ) -> mt.EmptyResult:
        uri = str(params.uri)
        conn = getattr(ctx.session, "_connection", None)
        where = (id(conn), uri)
        if where in self._subs:
            return mt.EmptyResult()
        if len(self._subs) >= _MAX_SUBSCRIPTIONS:
            raise _invalid(f"too many resource subscriptions (at most {_MAX_SUBSCRIPTIONS})")
        key = uri[len(BOARD_SCHEME) :] if uri.startswith(BOARD_SCHEME) else None
        if key is None or self._board_for is None or self._mime(key) is None:
            if not any(r.match(uri) is not None for r in self.resources()):
                raise MCPError(RESOURCE_NOT_FOUND, f"resource not found: {uri}")
            self._subs[where] = None  # told by MCPExposure.resource_updated()
            self._sessions[where] = ctx.session
            return mt.EmptyResult()
        session = ctx.session

        async def changed(change: Any) -> None:
            if change.key == key:
                try:
                    await session.send_resource_updated(uri)
                except Exception as exc:  # the client went away: stop watching for it
                    logger.debug("resource update for %s not delivered: %s", uri, exc)
                    await self._drop(where)

        board = self._board_for(self._identity(ctx))
        try:
            self._subs[where] = await board.subscribe(key, changed)
        except PermissionDenied as exc:
            raise _invalid(f"resource {uri!r}: {exc}") from None
        self._sessions[where] = session
        return mt.EmptyResult()

    async def unsubscribe(
        self, ctx: ServerRequestContext[Any], params: mt.UnsubscribeRequestParams
    ) -> mt.EmptyResult:
        conn = getattr(ctx.session, "_connection", None)
        await self._drop((id(conn), str(params.uri)))
        return mt.EmptyResult()

    async def _drop(self, where: tuple[int, str]) -> None:
        sub = self._subs.pop(where, None)
        self._sessions.pop(where, None)
        if sub is not None:
            with contextlib.suppress(Exception):
                await sub.aclose()

    def sessions_for(self, uri: str) -> list[Any]:
        """The client sessions subscribed to ``uri`` (for MCPExposure.resource_updated)."""
        return [s for (_, u), s in self._sessions.items() if u == uri]

    async def aclose(self) -> None:
        for where in list(self._subs):
            await self._drop(where)

    # -- prompts ---------------------------------------------------------------------------------
    async def list_prompts(
        self, ctx: ServerRequestContext[Any], params: mt.PaginatedRequestParams | None
    ) -> mt.ListPromptsResult:
        return mt.ListPromptsResult(
            prompts=[
                mt.Prompt(
                    name=p.name,
                    title=p.title,
                    description=p.description or None,
                    arguments=[
                        mt.PromptArgument(name=n, description=d or None, required=req)
                        for n, d, req in p.arguments
                    ],
                )
                for p in self.prompts().values()
            ]
        )

    async def get_prompt(
        self, ctx: ServerRequestContext[Any], params: mt.GetPromptRequestParams
    ) -> mt.GetPromptResult | mt.InputRequiredResult:
        owner = next(
            ((a, p) for a in self._agents for p in prompt_specs(a) if p.name == params.name), None
        )
        if owner is None:
            raise _invalid(
                f"unknown prompt {params.name!r}; this server has {sorted(self.prompts())}"
            )
        agent, spec = owner
        try:
            kwargs = spec.convert(params.arguments or {})
            if spec.handler.context_arg is not None and self._calls is not None:
                return await self._prompt_with_ctx(ctx, params, agent, spec, kwargs)
            messages = prompt_messages(await spec.call(kwargs))
        except ValidationError as exc:
            raise _invalid(str(exc)) from None
        except (ValueError, LookupError) as exc:
            raise _invalid(f"prompt {spec.name!r}: {type(exc).__name__}: {exc}") from None
        return mt.GetPromptResult(description=spec.description or None, messages=messages)

    async def _prompt_with_ctx(
        self,
        ctx: ServerRequestContext[Any],
        params: mt.GetPromptRequestParams,
        agent: Agent,
        spec: PromptSpec,
        kwargs: dict[str, Any],
    ) -> mt.GetPromptResult | mt.InputRequiredResult:
        """Run a prompt that takes ``ctx``: its questions reach the client."""
        assert self._calls is not None
        assert spec.handler.context_arg is not None
        timeout = self._timeout
        async with self._calls.open(self._sender, ctx, self._levels, params) as (call_id, call):
            env = Envelope(
                id=new_id(),
                kind="request",
                sender=self._sender,
                recipient=agent.name,
                handler=spec.name,
                deadline=None if timeout is None else time.time() + timeout,
                headers={CALLER_HEADER: call_id},
            )
            kwargs[spec.handler.context_arg] = agent.context_class(agent, env)
            try:
                async with asyncio.timeout(timeout):
                    messages = prompt_messages(await spec.call(kwargs))
            except (ValidationError, ValueError, LookupError):
                raise
            except Exception as exc:
                asking = input_required(call)  # 2026-07-28: ask the client, then again
                if asking is not None:
                    return asking
                missing = missing_capability(call, f"prompt {spec.name!r}")
                if missing is not None and isinstance(exc, ClientUnsupported):
                    raise missing from None
                if isinstance(exc, AgentCommError | TimeoutError):
                    what = "no answer in time" if isinstance(exc, TimeoutError) else exc
                    raise MCPError(
                        mt.INTERNAL_ERROR, f"prompt {spec.name!r}: {type(exc).__name__}: {what}"
                    ) from None
                raise
        return mt.GetPromptResult(description=spec.description or None, messages=messages)

    # -- completion ------------------------------------------------------------------------------
    async def complete(
        self, ctx: ServerRequestContext[Any], params: mt.CompleteRequestParams
    ) -> mt.CompleteResult:
        ref, arg = params.ref, params.argument
        target: PromptSpec | ResourceSpec | None = None
        if isinstance(ref, mt.PromptReference):
            target = self.prompts().get(ref.name)
            if target is None:
                raise _invalid(f"unknown prompt {ref.name!r}")
        else:
            uri = str(getattr(ref, "uri", ""))
            target = next((r for r in self.resources() if r.uri == uri), None)
            if target is None and not (uri == BOARD_SCHEME + "{key}" and self._board):
                raise _invalid(f"unknown resource template {uri!r}")
        if target is None:  # board://{key}: the keys under the published prefixes
            values = await self._board_keys(ctx, arg.value)
        else:
            values = await target.suggestions(arg.name, arg.value)
        return mt.CompleteResult(
            completion=mt.Completion(values=values[:100], total=len(values), has_more=False)
        )

    async def _board_keys(self, ctx: ServerRequestContext[Any], prefix: str) -> list[str]:
        if self._board_for is None:
            return []
        board = self._board_for(self._identity(ctx))
        out: list[str] = []
        for published in self._board:
            with contextlib.suppress(PermissionDenied):
                out.extend(k for k in await board.keys(published) if k.startswith(prefix))
        return sorted(out)[:100]


def _as_resource(uri: str, spec: ResourceSpec, value: Any) -> Resource:
    if isinstance(value, Resource):
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        return Resource(uri=uri, blob=bytes(value), mime_type=spec.mime_type)
    if isinstance(value, str):
        return Resource(uri=uri, text=value, mime_type=spec.mime_type or "text/plain")
    text = msgspec.json.encode(value).decode()
    return Resource(uri=uri, text=text, mime_type=spec.mime_type or "application/json")
