"""An agent's A2A skills: one per handler, with its kind and JSON Schemas (no SDK needed).

A request handler is a ``request`` skill (``message/send`` answers with a message),
an async generator handler a ``stream`` skill (``message/stream`` streams its chunks
as artifact updates) and a task handler a ``task`` skill (``message/send`` starts a
durable task). The kind travels on the card as a tag (``agentcomm:task``...), so an
agentcomm client knows how to call it; any other client just sends messages.

Which skill a message is for: its ``metadata.skill`` (or the request's), else the
exposure's default skill (the only one, or the one named by ``expose(default=...)``).

Example::

    for s in skills_of(agent):
        print(s.id, s.kind, s.input_schema)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from agentcomm.core.errors import AgentCommError, ValidationError
from agentcomm.tasks.declare import task_specs
from agentcomm.tools.schemas import tool_schemas

if TYPE_CHECKING:
    from agentcomm.core.schema import HandlerSpec
    from agentcomm.host.agent import Agent

__all__ = ["KIND_TAG", "Skill", "SkillKind", "payload_from_text", "skills_of"]

#: How a skill is called: one answer, a stream of chunks, or a durable task.
SkillKind = Literal["request", "stream", "task"]
#: The tag prefix that says a skill's kind on the card.
KIND_TAG = "agentcomm:"

_ANY_OBJECT: dict[str, Any] = {"type": "object", "additionalProperties": True}


@dataclass(frozen=True, slots=True)
class Skill:
    """One skill of an exposed (or remote) agent.

    ``id`` is the handler's name; ``input_schema`` the JSON Schema of the payload (an
    object), ``output_schema`` that of the result or of each chunk (``None`` when
    undeclared).

    Example::

        Skill("draft", "stream", "Write a draft.", {"type": "object"}, {"type": "string"})
    """

    id: str
    kind: SkillKind
    description: str
    input_schema: dict[str, Any]
    output_schema: dict[str, Any] | None
    tags: tuple[str, ...] = field(default=())

    @property
    def text_field(self) -> str | None:
        """The one property a plain-text message fills, if the input has exactly one.

        Example::

            assert Skill("s", "request", "", {"properties": {"q": {}}}, None).text_field == "q"
        """
        props = self.input_schema.get("properties")
        if not isinstance(props, dict):
            return None
        if len(props) == 1:
            return str(next(iter(props)))
        required = self.input_schema.get("required") or []
        strings = [k for k in required if (props.get(k) or {}).get("type") == "string"]
        return str(strings[0]) if len(strings) == 1 and len(required) == 1 else None


def _schemas(spec: HandlerSpec) -> tuple[dict[str, Any], dict[str, Any] | None]:
    try:
        inp, _, _ = tool_schemas(spec)
    except AgentCommError:
        inp = dict(_ANY_OBJECT)
    out: dict[str, Any] | None = None
    if spec.output is not None:
        try:
            out = dict(spec.output.json_schema())
        except AgentCommError:
            out = None
    return inp, out


def _first_line(text: str, fallback: str) -> str:
    return text.strip() or fallback


def skills_of(agent: Agent) -> list[Skill]:
    """The skills of ``agent``: its handlers, then its task handlers, sorted by name.

    Example::

        ids = [s.id for s in skills_of(agent)]
    """
    out: list[Skill] = []
    for name in sorted(agent.handlers):
        spec = agent.handlers[name]
        kind: SkillKind = "stream" if spec.streams else "request"
        inp, outp = _schemas(spec)
        desc = _first_line(spec.description, f"{agent.name}.{name}")
        out.append(Skill(name, kind, desc, inp, outp, (KIND_TAG + kind,)))
    for ts in sorted(task_specs(agent), key=lambda t: t.name):
        inp, outp = _schemas(ts.handler)
        desc = _first_line(ts.handler.description, f"{agent.name}.{ts.name} (a durable task)")
        out.append(Skill(ts.name, "task", desc, inp, outp, (KIND_TAG + "task",)))
    return out


def payload_from_text(skill: Skill, text: str) -> Any:
    """The payload a plain-text message means for ``skill``.

    A JSON object is taken as the payload; otherwise the text fills the input's one
    property. Raises :class:`~agentcomm.errors.ValidationError` when neither applies.

    Example::

        payload_from_text(skill, "tea")   # {"topic": "tea"} for a one-argument handler
    """
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            value = json.loads(stripped)
        except ValueError:
            value = None
        if isinstance(value, dict):
            return value
    name = skill.text_field
    if name is not None:
        return {name: text}
    props = skill.input_schema.get("properties")
    if isinstance(props, dict) and not props:
        return {}
    raise ValidationError(
        f"skill {skill.id!r} takes a JSON object ({sorted(props or {})}): "
        "send a data part, or text holding a JSON object"
    )
