"""An MCP server's tools as agentcomm handlers (the proxy agent's side), internal.

Part of :mod:`agentcomm.tools`: :class:`SchemaCodec` checks a tool's arguments
against the server's input schema (``jsonschema``, imported when first used),
:func:`proxy_spec` builds the handler spec that forwards a request's whole payload
as the tool's arguments, and :func:`handler_name` turns a tool name into a valid,
unique handler name. :mod:`.mcp_client` installs them on the proxy agent.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Coroutine
from typing import Any

import msgspec

from agentcomm.core.errors import ConfigurationError, ValidationError
from agentcomm.core.names import check_name
from agentcomm.core.schema import Codec, HandlerSpec, inspect_handler
from agentcomm.host.context import Context

__all__ = ["SchemaCodec", "handler_name", "proxy_spec"]

logger = logging.getLogger("agentcomm.mcp")

_NULL = b"null"


class SchemaCodec(Codec):
    """Validates a tool's arguments (a JSON object) against the server's input schema."""

    __slots__ = ("_schema", "_validator")

    def __init__(self, schema: dict[str, Any], name: str) -> None:
        super().__init__(dict[str, Any], name=name)
        from jsonschema.validators import validator_for  # type: ignore[import-untyped]

        self._schema = schema
        try:
            cls = validator_for(schema)
            cls.check_schema(schema)
            self._validator: Any = cls(schema)
        except Exception as exc:
            logger.warning(
                "%s: unusable input schema (%s); arguments not checked locally", name, exc
            )
            self._validator = None

    def decode(self, raw: bytes | msgspec.Raw) -> Any:
        return self.check({} if bytes(raw) == _NULL else super().decode(raw))

    def check(self, obj: Any) -> Any:
        """Return ``obj`` if the tool's input schema accepts it, else raise ValidationError."""
        if not isinstance(obj, dict):
            raise ValidationError(f"{self.name}: expected a JSON object, got {type(obj).__name__}")
        if self._validator is not None:
            from jsonschema.exceptions import best_match  # type: ignore[import-untyped]

            try:  # jsonschema recurses: a recursive schema and deep arguments (hostile)
                err = best_match(self._validator.iter_errors(obj))
            except RecursionError:
                raise ValidationError(f"{self.name}: arguments nest too deep to check") from None
            if err is not None:
                where = "/".join(str(p) for p in err.absolute_path)
                at = f" {where}:" if where else ""  # the name already says "arguments"
                raise ValidationError(f"{self.name}:{at} {err.message}")
        return obj

    def json_schema(self) -> dict[str, Any]:
        return dict(self._schema)


async def _proxy_template(arguments: dict[str, Any], ctx: Context) -> Any:
    """Signature of every proxy handler: the whole payload is the tool's arguments."""
    raise NotImplementedError  # pragma: no cover - only its signature is used


def proxy_spec(
    name: str, fn: Callable[..., Coroutine[Any, Any, Any]], codec: SchemaCodec, description: str
) -> HandlerSpec:
    """A handler spec whose input is a whole JSON object checked against the tool's schema."""
    template = inspect_handler(_proxy_template, name)
    decode = codec.decode

    def decode_args(raw: msgspec.Raw | bytes) -> dict[str, Any]:
        return {"arguments": decode(raw)}

    changes: dict[str, Any] = {
        "fn": fn,
        "input": codec,
        "mode": "model",
        "arg_names": ("arguments",),
        "description": description,
        "decode_args": decode_args,
        "decode_positional": None,
    }
    known = {f.name for f in dataclasses.fields(HandlerSpec)}
    return dataclasses.replace(template, **{k: v for k, v in changes.items() if k in known})


def handler_name(tool: str, taken: set[str]) -> str:
    """``tool`` as a valid handler name not in ``taken`` (odd characters become ``_``)."""
    base = "".join(c if c.isalnum() or c in "_-" else "_" for c in tool)[:120] or "tool"
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}_{n}"
    try:
        return check_name("handler", name)
    except ConfigurationError:  # pragma: no cover - the rewrite above makes it valid
        return f"tool_{len(taken)}"
