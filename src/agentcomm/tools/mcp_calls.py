"""One MCP request seen from the handler: progress, logs, elicitation, sampling, roots (internal).

The exposure registers an :class:`MCPCall` for each tool call of a handler (and each
``prompts/get`` of a prompt) that takes a ``ctx``, under a fresh id it sends in the
request's ``agentcomm-caller`` header; the handler's context finds it through the
runtime extension ``callers`` (:class:`MCPCalls`) and then ``ctx.progress`` becomes
``notifications/progress`` for the client's token, ``ctx.log``/``ctx.logger``
``notifications/message``, ``ctx.ask`` ``elicitation/create``, ``ctx.sample``
``sampling/createMessage`` and ``ctx.roots`` ``roots/list``.

On the 2026-07-28 protocol these questions are input requests of an ``input_required``
result. A question registers its request before its first suspension point, so
questions awaited together (``asyncio.gather``) all register before the first one ends
the run: they go out in one round.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import weakref
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import mcp_types as mt
import msgspec
from mcp.server.connection import allowed_log_levels
from mcp.shared.exceptions import MCPError
from mcp.shared.message import ServerMessageMetadata
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from agentcomm.core.callers import ClientUnsupported, InputDeclined, Root
from agentcomm.core.envelope import new_id
from agentcomm.core.errors import AgentCommError, ValidationError
from agentcomm.core.task_errors import InputTimeout
from agentcomm.tools.content import Message
from agentcomm.tools.mcp_content import from_block, sampling_messages

if TYPE_CHECKING:
    from mcp.server.context import ServerRequestContext

    from agentcomm.host.runtime import Runtime

__all__ = [
    "LEVELS",
    "MCPCall",
    "MCPCalls",
    "NeedsInput",
    "input_required",
    "level_of",
    "missing_capability",
]

#: MCP log levels, least severe first (RFC 5424).
LEVELS = ("debug", "info", "notice", "warning", "error", "critical", "alert", "emergency")
_RANK = {name: i for i, name in enumerate(LEVELS)}

#: What a wrapped answer of ``ctx.ask(..., returns=<a plain type>)`` is called.
_ANSWER = "answer"


class NeedsInput(AgentCommError):
    """Raised in a handler by ``ctx.ask``/``ctx.sample`` on the 2026-07-28 protocol when the
    answer is not there yet: the call ends with an ``input_required`` result naming the
    question, and the client calls again with the answer (the handler runs again, and
    the questions it already asked are answered from the call's state)."""


def level_of(connection: Any, levels: weakref.WeakKeyDictionary[Any, str]) -> int:
    """The rank of the least severe level a client asked for (``logging/setLevel``)."""
    try:
        return _RANK.get(levels.get(connection, "debug"), 0)
    except TypeError:  # an object that cannot be weakly referenced
        return 0


class MCPCalls:
    """The runtime extension ``callers``: live MCP calls by id (see ``host.context``)."""

    def __init__(self, runtime: Runtime) -> None:
        self.calls: dict[str, MCPCall] = {}

    def channel(self, call_id: str) -> MCPCall | None:
        return self.calls.get(call_id)

    @contextlib.asynccontextmanager
    async def open(
        self,
        sender: str,
        ctx: ServerRequestContext[Any],
        levels: weakref.WeakKeyDictionary[Any, str],
        params: mt.InputResponseRequestParams | None,
    ) -> AsyncIterator[tuple[str, MCPCall]]:
        """Register an :class:`MCPCall` for one request: its id and the call; on the way
        out it is forgotten and its pending log records are sent."""
        call_id = new_id()
        call = MCPCall(sender, ctx, levels, params)
        self.calls[call_id] = call
        try:
            yield call_id, call
        finally:
            self.calls.pop(call_id, None)
            await call.flush()


def input_required(call: MCPCall | None) -> mt.InputRequiredResult | None:
    """The ``input_required`` result of a 2026-07-28 run that ended asking, else ``None``."""
    if call is None or not call.pending:
        return None
    return mt.InputRequiredResult(input_requests=call.pending, request_state=call.next_state())


def missing_capability(call: MCPCall | None, what: str) -> MCPError | None:
    """MCP's -32021 for a run that ended on an uncaught ``ClientUnsupported``, else ``None``."""
    if call is None or not call.missing:
        return None
    return MCPError(
        mt.MISSING_REQUIRED_CLIENT_CAPABILITY,
        f"{what} needs the client's {call.missing} capability",
        {"requiredCapabilities": {call.missing: {}}},
    )


def _schema_for(returns: Any) -> tuple[dict[str, Any], bool]:
    """The elicitation schema for ``returns`` and whether the answer is wrapped."""
    if isinstance(returns, dict):  # a JSON schema given as is: the content comes back as is
        return returns, False
    tp = str if returns is None else returns
    schema = msgspec.json.schema(tp)
    defs = schema.pop("$defs", {})
    if "$ref" in schema:
        schema = defs[schema["$ref"].rsplit("/", 1)[-1]]
    if schema.get("type") == "object" and "properties" in schema:
        schema = {k: v for k, v in schema.items() if k != "title"}
        return schema, False
    return {"type": "object", "properties": {_ANSWER: schema}, "required": [_ANSWER]}, True


class MCPCall:
    """The caller side of one tool call, offered to the handler's context."""

    __slots__ = (
        "_answers",
        "_asked",
        "_levels",
        "_notes",
        "ctx",
        "missing",
        "modern",
        "pending",
        "sender",
    )

    def __init__(
        self,
        sender: str,
        ctx: ServerRequestContext[Any],
        levels: weakref.WeakKeyDictionary[Any, str],
        params: mt.InputResponseRequestParams | None = None,
    ) -> None:
        self.sender = sender
        self.ctx = ctx
        self._levels = levels
        self._notes: list[tuple[str, Any, str | None]] = []
        #: The client capability a question needed and the client lacked ("sampling"...).
        self.missing: str | None = None
        # The 2026-07-28 protocol asks through input_required results (SEP-2322): the
        # answers so far come back in the call's (sealed) state and input responses.
        self.modern = ctx.protocol_version in MODERN_PROTOCOL_VERSIONS
        self.pending: dict[str, Any] = {}
        self._asked = 0
        self._answers: dict[str, tuple[str, Any]] = {}
        if params is not None and self.modern:
            self._answers = _state_answers(params.request_state)
            for key, got in (params.input_responses or {}).items():
                if isinstance(got, mt.ElicitResult):
                    kind = "ask"
                elif isinstance(got, mt.ListRootsResult):
                    kind = "roots"
                else:
                    kind = "sample"
                self._answers[key] = (kind, got.model_dump(mode="json", by_alias=True))

    def next_state(self) -> str:
        """The state of the next round: every answer given so far."""
        return json.dumps({"answers": {k: list(v) for k, v in self._answers.items()}})

    def _key(self, kind: str, key: str | None) -> str:
        self._asked += 1
        return key or f"{kind}-{self._asked}"

    def _answer(self, kind: str, key: str, request: Any) -> Any:
        """The client's answer to ``key``, or (the first time) ask for it: NeedsInput.

        Called before any suspension point of the question, so concurrent questions
        all register here before the first NeedsInput ends the run."""
        got = self._answers.get(key)
        if got is not None and got[0] == kind:
            return got[1]
        self.pending[key] = request
        raise NeedsInput(f"waiting for the MCP client's answer to {key!r}")

    # -- progress and logs ------------------------------------------------------------
    def _replaying(self) -> bool:
        """True while a 2026-07-28 round re-runs the part an earlier round already ran (up
        to its last answered question): its progress and logs were sent then."""
        return self.modern and self._asked < len(self._answers)

    async def progress(self, done: float, total: float | None, message: str | None) -> None:
        if self._replaying():
            return
        await self.flush()
        await self.ctx.session.report_progress(done, total, message)

    def _wanted(self, level: str) -> bool:
        ctx = self.ctx
        if level not in _RANK:
            level = "info"
        if level not in allowed_log_levels(ctx.protocol_version, ctx.meta):
            return False
        conn = getattr(ctx.session, "_connection", None)
        return _RANK[level] >= level_of(conn, self._levels)

    async def log(self, level: str, data: Any, logger: str | None) -> None:
        if self._replaying():
            return
        await self.flush()
        await self._send_log(level, data, logger)

    def note(self, level: str, data: Any, logger: str | None) -> None:
        """A standard-logging record: sent with the next awaited call or at the end."""
        if len(self._notes) < 1000 and not self._replaying():
            self._notes.append((level, data, logger))

    async def flush(self) -> None:
        notes, self._notes = self._notes, []
        for level, data, logger in notes:
            await self._send_log(level, data, logger)

    async def _send_log(self, level: str, data: Any, logger: str | None) -> None:
        level = level if level in _RANK else "info"
        if not self._wanted(level):
            return
        params = mt.LoggingMessageNotificationParams(level=level, data=data, logger=logger)  # type: ignore[arg-type]
        await self.ctx.session.send_notification(
            mt.LoggingMessageNotification(params=params), related_request_id=self.ctx.request_id
        )

    # -- questions to the client ----------------------------------------------------------
    def _require(self, what: str, cap: mt.ClientCapabilities) -> None:
        session = self.ctx.session
        has = session.check_client_capability(cap)
        if not has or not (self.modern or session.can_send_request):
            self.missing = what if not has else None
            raise ClientUnsupported(
                f"the MCP client did not declare the {what} capability (or cannot take "
                f"requests on this connection), so this tool cannot ask it"
            )

    async def ask(
        self, question: Any, returns: Any, timeout: float | None, key: str | None = None
    ) -> Any:
        self._require("elicitation", mt.ClientCapabilities(elicitation=mt.ElicitationCapability()))
        schema, wrapped = _schema_for(returns)
        text = question if isinstance(question, str) else msgspec.json.encode(question).decode()
        if self.modern:  # no await before _answer: see the module's docstring
            params = mt.ElicitRequestFormParams(message=text, requested_schema=schema)
            raw = self._answer("ask", self._key("ask", key), mt.ElicitRequest(params=params))
            result = mt.ElicitResult.model_validate(raw)
        else:
            await self.flush()
            try:
                async with asyncio.timeout(timeout):
                    result = await self.ctx.session.elicit_form(
                        text, schema, related_request_id=self.ctx.request_id
                    )
            except TimeoutError:
                raise InputTimeout("", f"no answer to {text!r} within {timeout:g}s") from None
            except MCPError as exc:
                raise ClientUnsupported(
                    f"the MCP client refused the question: {exc.message}"
                ) from None
        if result.action != "accept":
            raise InputDeclined(f"the MCP client's user chose {result.action!r}", result.action)
        content = dict(result.content or {})
        if isinstance(returns, dict):
            return content
        value = content.get(_ANSWER) if wrapped else content
        tp = str if returns is None else returns
        try:
            return msgspec.convert(value, tp, strict=False)
        except msgspec.ValidationError as exc:
            raise ValidationError(f"the MCP client's answer does not fit: {exc}") from None

    async def sample(self, messages: Any, options: dict[str, Any]) -> Any:
        self._require("sampling", mt.ClientCapabilities(sampling=mt.SamplingCapability()))
        if isinstance(messages, str):
            messages = [Message("user", messages)]
        prefs = None
        if options.get("model"):
            prefs = mt.ModelPreferences(hints=[mt.ModelHint(name=options["model"])])
        request = mt.CreateMessageRequest(
            params=mt.CreateMessageRequestParams(
                messages=sampling_messages(messages),
                max_tokens=int(options.get("max_tokens") or 1000),
                system_prompt=options.get("system"),
                temperature=options.get("temperature"),
                stop_sequences=options.get("stop"),
                model_preferences=prefs,
            )
        )
        if self.modern:
            raw = self._answer("sample", self._key("sample", options.get("key")), request)
            return from_block(mt.CreateMessageResult.model_validate(raw).content)
        await self.flush()
        try:
            result = await self.ctx.session.send_request(
                request,
                mt.CreateMessageResult,
                metadata=ServerMessageMetadata(related_request_id=self.ctx.request_id),
            )
        except MCPError as exc:
            raise ClientUnsupported(f"the MCP client refused to sample: {exc.message}") from None
        return from_block(result.content)

    async def roots(self, timeout: float | None, key: str | None) -> list[Root]:
        self._require("roots", mt.ClientCapabilities(roots=mt.RootsCapability()))
        if self.modern:
            raw = self._answer("roots", self._key("roots", key), mt.ListRootsRequest())
            result = mt.ListRootsResult.model_validate(raw)
        else:
            await self.flush()
            try:
                async with asyncio.timeout(timeout):
                    result = await self.ctx.session.send_request(
                        mt.ListRootsRequest(),
                        mt.ListRootsResult,
                        metadata=ServerMessageMetadata(related_request_id=self.ctx.request_id),
                    )
            except TimeoutError:
                raise InputTimeout("", f"no roots from the client within {timeout:g}s") from None
            except MCPError as exc:
                raise ClientUnsupported(
                    f"the MCP client refused to list its roots: {exc.message}"
                ) from None
        return [Root(str(r.uri), r.name) for r in result.roots]


def _state_answers(state: str | None) -> dict[str, tuple[str, Any]]:
    """The answers an earlier round kept in the call's state (sealed by the SDK's boundary)."""
    if not state:
        return {}
    try:
        answers = json.loads(state)["answers"]
        return {str(k): (str(v[0]), v[1]) for k, v in answers.items()}
    except (ValueError, KeyError, TypeError, IndexError, AttributeError):
        raise MCPError(mt.INVALID_PARAMS, "requestState is not this server's") from None
