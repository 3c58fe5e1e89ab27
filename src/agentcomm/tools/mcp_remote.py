"""A connected MCP server's resources, prompts, logs and questions (internal).

:class:`RemoteFeatures` is the half of :class:`~agentcomm.tools.mcp_client.MCPConnection`
beyond tools: ``list_resources``/``read_resource``/``subscribe``, ``list_prompts``/
``get_prompt``, ``complete``, and the SDK callbacks that hand the server's log
messages, elicitation requests and sampling requests to the user's functions.

Example::

    async def answer(message: str, schema: dict) -> dict | None:
        return {"name": "Ada"}                     # None declines

    conn = await rt.tools.connect("srv", url=url, on_elicit=answer)
    for r in await conn.list_resources(): print(r.uri)
    print(await conn.read_resource("test://static-text"))
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import mcp_types as mt
import msgspec
from mcp.shared.exceptions import MCPError

from agentcomm.core.callers import InputDeclined
from agentcomm.core.errors import (
    AgentCommError,
    TransportError,
    UnknownHandler,
    ValidationError,
)
from agentcomm.tools.content import Audio, Image, Message, Resource
from agentcomm.tools.mcp_content import from_block, from_contents, to_block

if TYPE_CHECKING:
    from mcp import Client
    from mcp.client.session import ClientRequestContext

__all__ = [
    "ElicitHandler",
    "LogHandler",
    "PromptInfo",
    "RemoteFeatures",
    "ResourceInfo",
    "SampleHandler",
]

#: ``on_elicit(message, schema) -> content dict`` (``None``: decline); sync or async.
ElicitHandler = Callable[[str, dict[str, Any]], Any]
#: ``on_sample(messages, options) -> str | Image | Audio | Message``; sync or async.
SampleHandler = Callable[[list[Message], dict[str, Any]], Any]
#: ``on_log(level, data, logger)``; sync or async.
LogHandler = Callable[[str, Any, str | None], Any]


class ResourceInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A remote server's resource (``template`` True for a ``{variable}`` URI template).

    Example::

        [r.uri for r in await conn.list_resources()]
    """

    uri: str
    name: str
    description: str | None = None
    mime_type: str | None = None
    template: bool = False


class PromptInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A remote server's prompt and its arguments (``required`` names the mandatory ones).

    Example::

        [(p.name, p.arguments) for p in await conn.list_prompts()]
    """

    name: str
    description: str | None = None
    arguments: tuple[str, ...] = ()
    required: tuple[str, ...] = ()


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


class RemoteFeatures:
    """Resources, prompts, completion and the server-to-client callbacks of a connection."""

    name: str
    _on_elicit: ElicitHandler | None
    _on_sample: SampleHandler | None
    _on_log: LogHandler | None

    def _live(self) -> Client:
        raise NotImplementedError  # MCPConnection

    # -- the SDK's callbacks --------------------------------------------------------------
    def _callbacks(self) -> dict[str, Any]:
        out: dict[str, Any] = {"logging_callback": self._log_callback}
        if self._on_elicit is not None:
            out["elicitation_callback"] = self._elicit_callback
        if self._on_sample is not None:
            out["sampling_callback"] = self._sample_callback
        return out

    async def _log_callback(self, params: mt.LoggingMessageNotificationParams) -> None:
        level = str(params.level)
        py = logging.getLevelName(level.upper())
        std = logging.getLogger(f"agentcomm.mcp.{self.name}")
        std.log(py if isinstance(py, int) else logging.WARNING, "%s", params.data)
        if self._on_log is not None:
            try:
                await _maybe_await(self._on_log(level, params.data, params.logger))
            except Exception:
                std.exception("on_log failed")

    async def _elicit_callback(
        self, context: ClientRequestContext, params: mt.ElicitRequestParams
    ) -> mt.ElicitResult | mt.ErrorData:
        assert self._on_elicit is not None
        schema = dict(getattr(params, "requested_schema", None) or {})
        try:
            content = await _maybe_await(self._on_elicit(params.message, schema))
        except InputDeclined as exc:
            return mt.ElicitResult(action="cancel" if exc.action == "cancel" else "decline")
        except Exception as exc:
            return mt.ErrorData(code=mt.INTERNAL_ERROR, message=f"{type(exc).__name__}: {exc}")
        if content is None:
            return mt.ElicitResult(action="decline")
        return mt.ElicitResult(action="accept", content=dict(content))

    async def _sample_callback(
        self, context: ClientRequestContext, params: mt.CreateMessageRequestParams
    ) -> mt.CreateMessageResult | mt.ErrorData:
        assert self._on_sample is not None
        messages = []
        for m in params.messages:
            content = m.content[0] if isinstance(m.content, list) else m.content
            value = from_block(content)
            if not isinstance(value, str | Image | Audio):
                value = str(value)
            messages.append(Message(m.role, value))
        options = {
            "max_tokens": params.max_tokens,
            "system": params.system_prompt,
            "temperature": params.temperature,
            "stop": params.stop_sequences,
        }
        try:
            answer = await _maybe_await(self._on_sample(messages, options))
        except Exception as exc:
            return mt.ErrorData(code=mt.INTERNAL_ERROR, message=f"{type(exc).__name__}: {exc}")
        role = "assistant"
        if isinstance(answer, Message):
            role, answer = answer.role, answer.content
        block = to_block(answer)
        if not isinstance(block, mt.TextContent | mt.ImageContent | mt.AudioContent):
            block = mt.TextContent(type="text", text=str(answer))
        return mt.CreateMessageResult(role=role, content=block, model="agentcomm")  # type: ignore[arg-type]

    # -- resources ----------------------------------------------------------------------------
    async def _ask(self, what: str, call: Callable[[], Awaitable[Any]]) -> Any:
        try:
            return await call()
        except MCPError as exc:
            if exc.code == mt.METHOD_NOT_FOUND:
                raise UnknownHandler(f"MCP server {self.name!r} does not serve {what}") from None
            if exc.code == -32002:
                raise UnknownHandler(f"MCP server {self.name!r}: {exc.message}") from None
            if exc.code == mt.INVALID_PARAMS:
                raise ValidationError(f"MCP server {self.name!r}: {exc.message}") from None
            raise TransportError(f"MCP server {self.name!r}: {exc.message}") from None
        except AgentCommError:
            raise
        except Exception as exc:  # the session went away, or an odd answer
            raise TransportError(f"MCP server {self.name!r}: {type(exc).__name__}: {exc}") from None

    async def list_resources(self) -> list[ResourceInfo]:
        """The server's resources and resource templates.

        Example::

            uris = [r.uri for r in await conn.list_resources() if not r.template]
        """
        client = self._live()
        res = await self._ask("resources", lambda: client.list_resources())
        out = [
            ResourceInfo(
                uri=str(r.uri), name=r.name, description=r.description, mime_type=r.mime_type
            )
            for r in res.resources
        ]
        tpl = await self._ask("resources", lambda: client.list_resource_templates())
        out.extend(
            ResourceInfo(
                uri=t.uri_template,
                name=t.name,
                description=t.description,
                mime_type=t.mime_type,
                template=True,
            )
            for t in tpl.resource_templates
        )
        return out

    async def read_resource(self, uri: str) -> list[Resource]:
        """A resource's contents as :class:`Resource` values (blobs as ``bytes``).

        Raises :class:`UnknownHandler` for a resource the server does not have.

        Example::

            [text] = await conn.read_resource("board://plan.goal")
        """
        client = self._live()
        res = await self._ask(f"resource {uri}", lambda: client.read_resource(uri))
        return [from_contents(c) for c in res.contents]

    async def subscribe(self, uri: str) -> None:
        """Ask to be told when ``uri`` changes (handshake-era servers); see ``on_update``.

        Example::

            await conn.subscribe("board://plan.goal")
        """
        import warnings

        client = self._live()
        with warnings.catch_warnings():  # deprecated in the 2026-07-28 revision
            warnings.simplefilter("ignore")
            await self._ask(f"subscriptions to {uri}", lambda: client.subscribe_resource(uri))

    # -- prompts -----------------------------------------------------------------------------
    async def list_prompts(self) -> list[PromptInfo]:
        """The server's prompts.

        Example::

            names = [p.name for p in await conn.list_prompts()]
        """
        client = self._live()
        res = await self._ask("prompts", lambda: client.list_prompts())
        return [
            PromptInfo(
                name=p.name,
                description=p.description,
                arguments=tuple(a.name for a in p.arguments or ()),
                required=tuple(a.name for a in p.arguments or () if a.required),
            )
            for p in res.prompts
        ]

    async def get_prompt(self, name: str, arguments: dict[str, Any] | None = None) -> list[Message]:
        """A prompt's messages, its arguments given as values (sent as strings).

        Example::

            messages = await conn.get_prompt("review", {"code": "print(1)"})
        """
        client = self._live()
        args = {
            k: v if isinstance(v, str) else msgspec.json.encode(v).decode()
            for k, v in (arguments or {}).items()
        }
        res = await self._ask(f"prompt {name}", lambda: client.get_prompt(name, args))
        return [Message(m.role, from_block(m.content)) for m in res.messages]

    async def complete(
        self, *, argument: str, value: str = "", prompt: str | None = None, uri: str | None = None
    ) -> list[str]:
        """Completion values for a prompt's (``prompt=``) or template's (``uri=``) argument.

        Example::

            await conn.complete(prompt="review", argument="language", value="py")
        """
        client = self._live()
        if (prompt is None) == (uri is None):
            raise ValidationError("complete() takes exactly one of prompt= or uri=")
        ref: mt.PromptReference | mt.ResourceTemplateReference = (
            mt.PromptReference(type="ref/prompt", name=prompt)
            if prompt is not None
            else mt.ResourceTemplateReference(type="ref/resource", uri=str(uri))
        )
        res = await self._ask(
            "completion", lambda: client.complete(ref, {"name": argument, "value": value})
        )
        return list(res.completion.values)
