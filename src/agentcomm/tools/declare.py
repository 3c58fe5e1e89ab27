"""Declaring MCP prompts and resources on an agent (``@agent.prompt``, ``@agent.resource``).

The declarations are kept on the agent (``agent.declarations["prompts"]`` and
``["resources"]``); an exposure (:meth:`Tools.expose`) serves them. Arguments are
typed like a handler's: MCP sends prompt and template arguments as strings, and
they are converted to the annotated types (``"3"`` to ``3`` for an ``int``).

Example::

    @agent.prompt(complete={"language": ["python", "rust"]})
    def review(code: str, language: str = "python") -> str:
        "Ask for a code review."
        return f"Review this {language} code:\\n{code}"

    @agent.resource("notes://{day}", mime_type="text/plain")
    async def notes(day: str) -> str:
        return f"notes of {day}"
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec

from agentcomm.core.errors import ConfigurationError, ValidationError
from agentcomm.core.names import check_name
from agentcomm.core.schema import HandlerSpec, inspect_handler

if TYPE_CHECKING:
    from agentcomm.host.agent import Agent

__all__ = [
    "PROMPTS",
    "RESOURCES",
    "Completer",
    "PromptSpec",
    "ResourceSpec",
    "declare_prompt",
    "declare_resource",
    "prompt_specs",
    "resource_specs",
]

PROMPTS = "prompts"
RESOURCES = "resources"

F = TypeVar("F", bound=Callable[..., Any])

#: Suggestions for an argument: a fixed list, or ``fn(prefix) -> values`` (sync or async).
Completer = Iterable[str] | Callable[[str], Iterable[str] | Awaitable[Iterable[str]]]

_VAR = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class _Callable:
    """A prompt or resource function with typed arguments."""

    name: str
    handler: HandlerSpec
    arguments: tuple[tuple[str, str, bool], ...]  # (name, description, required)
    complete: Mapping[str, Completer] = field(default_factory=dict)

    def convert(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        """The call's keyword arguments from MCP's string arguments; ValidationError if bad."""
        spec = self.handler
        missing = [a for a, _, req in self.arguments if req and a not in raw]
        if missing:
            raise ValidationError(f"{self.name}: missing required arguments {missing}")
        unknown = sorted(set(raw) - {a for a, _, _ in self.arguments})
        if unknown:
            raise ValidationError(f"{self.name}: unknown arguments {unknown}")
        if spec.mode == "none":
            return {}
        data = msgspec.json.encode(dict(raw))
        try:
            kwargs = spec.decode_args(data)
        except ValidationError:  # strings for typed arguments: convert leniently
            try:
                obj = msgspec.convert(dict(raw), spec.input.type, strict=False)
            except (msgspec.ValidationError, TypeError) as exc:
                raise ValidationError(f"{self.name}: {exc}") from None
            kwargs = (
                {spec.arg_names[0]: obj}
                if spec.mode == "model"
                else {n: getattr(obj, n) for n in spec.arg_names}
            )
        return kwargs

    async def call(self, kwargs: dict[str, Any]) -> Any:
        result = self.handler.fn(**kwargs)
        if inspect.isawaitable(result):
            result = await result
        return result

    async def suggestions(self, argument: str, prefix: str) -> list[str]:
        """Completion values for ``argument`` starting with ``prefix`` (at most 100)."""
        source = self.complete.get(argument)
        if source is None:
            return []
        if callable(source):
            got = source(prefix)
            values: Iterable[str] = await got if inspect.isawaitable(got) else got
        else:
            values = [v for v in source if v.startswith(prefix)]
        return [str(v) for v in values][:100]


@dataclass(frozen=True)
class PromptSpec(_Callable):
    """A declared prompt template: ``fn(**arguments)`` returns its messages."""

    description: str = ""
    title: str | None = None


@dataclass(frozen=True)
class ResourceSpec(_Callable):
    """A declared resource (``uri``) or resource template (``uri`` with ``{variables}``)."""

    uri: str = ""
    description: str = ""
    mime_type: str | None = None
    title: str | None = None

    @property
    def is_template(self) -> bool:
        return bool(_VAR.search(self.uri))

    def match(self, uri: str) -> dict[str, str] | None:
        """The template variables of ``uri``, or ``None`` when it does not match."""
        if not self.is_template:
            return {} if uri == self.uri else None
        pattern = "".join(
            f"(?P<{part}>[^/]+)" if i % 2 else re.escape(part)
            for i, part in enumerate(_VAR.split(self.uri))
        )
        m = re.fullmatch(pattern, uri)
        return None if m is None else m.groupdict()


def _arguments(
    spec: HandlerSpec, only: set[str] | None = None
) -> tuple[tuple[str, str, bool], ...]:
    if spec.mode == "none":
        return ()
    schema = spec.input.json_schema()
    defs = schema.get("$defs", {})
    if "$ref" in schema:
        schema = defs.get(schema["$ref"].rsplit("/", 1)[-1], schema)
    props: dict[str, Any] = schema.get("properties", {})
    required = set(schema.get("required", ()))
    return tuple((n, str(p.get("description", "")), n in required) for n, p in props.items())


def _describe(fn: Callable[..., Any]) -> str:
    doc = inspect.getdoc(fn) or ""
    return doc.split("\n\n")[0].strip()


def declare_prompt(
    agent: Agent,
    fn: Callable[..., Any] | None,
    *,
    name: str | None = None,
    title: str | None = None,
    complete: Mapping[str, Completer] | None = None,
) -> Any:
    """Implements ``@agent.prompt``; see :meth:`agentcomm.Agent.prompt`."""

    def register(f: F) -> F:
        pname = check_name("prompt", name or f.__name__)
        if any(p.name == pname for p in prompt_specs(agent)):
            raise ConfigurationError(f"agent {agent.name!r} already has a prompt {pname!r}")
        spec = inspect_handler(f, pname)
        args = _arguments(spec)
        for arg in complete or {}:
            if arg not in {a for a, _, _ in args}:
                raise ConfigurationError(f"prompt {pname!r} has no argument {arg!r} to complete")
        agent.declare(
            PROMPTS,
            PromptSpec(pname, spec, args, dict(complete or {}), _describe(f), title),
        )
        agent._changed()
        return f

    return register(fn) if fn is not None else register


def declare_resource(
    agent: Agent,
    uri: str,
    *,
    name: str | None = None,
    title: str | None = None,
    mime_type: str | None = None,
    complete: Mapping[str, Completer] | None = None,
) -> Callable[[F], F]:
    """Implements ``@agent.resource``; see :meth:`agentcomm.Agent.resource`."""
    if "://" not in uri:
        raise ConfigurationError(f"a resource URI needs a scheme (e.g. notes://today), got {uri!r}")

    def register(f: F) -> F:
        rname = name or f.__name__
        spec = inspect_handler(f, check_name("resource", rname))
        variables = set(_VAR.findall(uri))
        params = {a for a, _, _ in _arguments(spec)}
        if variables != params:
            raise ConfigurationError(
                f"resource {uri!r}: the function's arguments {sorted(params)} must be the "
                f"URI's variables {sorted(variables)}"
            )
        for arg in complete or {}:
            if arg not in variables:
                raise ConfigurationError(f"resource {uri!r} has no variable {arg!r} to complete")
        agent.declare(
            RESOURCES,
            ResourceSpec(
                rname,
                spec,
                _arguments(spec),
                dict(complete or {}),
                uri,
                _describe(f),
                mime_type,
                title,
            ),
        )
        agent._changed()
        return f

    return register


def prompt_specs(agent: Agent) -> list[PromptSpec]:
    """The prompts declared on ``agent``."""
    return [p for p in agent.declarations.get(PROMPTS, ()) if isinstance(p, PromptSpec)]


def resource_specs(agent: Agent) -> list[ResourceSpec]:
    """The resources declared on ``agent``."""
    return [r for r in agent.declarations.get(RESOURCES, ()) if isinstance(r, ResourceSpec)]
