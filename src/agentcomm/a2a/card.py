"""The agent card of an exposure, and a card read back as skills (needs the ``a2a`` extra).

One skill per handler: its id and name are the handler's name, its description
the docstring, its tags say the kind (``agentcomm:request``, ``agentcomm:stream``,
``agentcomm:task``) and carry the input and output JSON Schemas
(``agentcomm:input=<json>``, ``agentcomm:output=<json>``: the card has no schema
field, and tags are what every client shows). The interfaces are JSON-RPC at the
exposure's URL, and HTTP+JSON at the same URL, each in spec 1.0 and 0.3.

Example::

    card = build_card(exposure)
    print(format_card(card_json(card)))
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from a2a.server.request_handlers.response_helpers import agent_card_to_dict
from a2a.types import a2a_pb2 as pb
from google.protobuf import json_format

from agentcomm.a2a.skills import KIND_TAG, Skill, SkillKind
from agentcomm.core.version import __version__

if TYPE_CHECKING:
    from agentcomm.a2a.exposed import Exposed

__all__ = ["build_card", "card_json", "format_card", "skills_from_card"]

_INPUT = KIND_TAG + "input="
_OUTPUT = KIND_TAG + "output="
_MODES = ["text/plain", "application/json"]


def build_card(x: Exposed) -> pb.AgentCard:
    """The card of an exposure: name, description, version, skills, capabilities, auth."""
    agent = x.agent
    description = x.description or _agent_description(x)
    card = pb.AgentCard(
        name=agent.name,
        description=description,
        version=x.version,
        default_input_modes=_MODES,
        default_output_modes=_MODES,
    )
    card.provider.organization = "agentcomm"
    card.provider.url = "https://github.com/agentcomm"
    card.capabilities.streaming = True
    card.capabilities.push_notifications = False
    card.capabilities.extended_agent_card = False
    for binding in x.bindings:
        url = x.url  # both bindings at the same base URL (their paths never clash)
        for version in ("1.0", "0.3"):
            card.supported_interfaces.append(
                pb.AgentInterface(url=url, protocol_binding=binding, protocol_version=version)
            )
    for skill in x.skills.values():
        card.skills.append(_skill(skill, x.default_skill))
    for auth in x.auth:
        scheme = pb.SecurityScheme()
        json_format.ParseDict(auth.card_scheme(), scheme)
        card.security_schemes[auth.scheme_name].CopyFrom(scheme)
        req = pb.SecurityRequirement()
        req.schemes[auth.scheme_name].CopyFrom(pb.StringList())
        card.security_requirements.append(req)
    return card


def _agent_description(x: Exposed) -> str:
    kinds = sorted({s.kind for s in x.skills.values()})
    return x.agent.description or (
        f"agentcomm agent {x.agent.name!r} ({', '.join(kinds)} skills), agentcomm {__version__}"
    )


def _skill(s: Skill, default: str | None) -> pb.AgentSkill:
    tags = [*s.tags, _INPUT + json.dumps(s.input_schema, separators=(",", ":"), sort_keys=True)]
    if s.output_schema is not None:
        tags.append(_OUTPUT + json.dumps(s.output_schema, separators=(",", ":"), sort_keys=True))
    if s.id == default:
        tags.append(KIND_TAG + "default")
    return pb.AgentSkill(
        id=s.id,
        name=s.id,
        description=s.description,
        tags=tags,
        input_modes=_MODES,
        output_modes=_MODES,
        examples=[f'{{"metadata": {{"skill": "{s.id}"}}}}'],
    )


def card_json(card: pb.AgentCard) -> dict[str, Any]:
    """The card as served (1.0 fields with the 0.3 ones merged in)."""
    return agent_card_to_dict(card)


def skills_from_card(card: dict[str, Any]) -> list[Skill]:
    """The skills a card (JSON) declares; kinds and schemas from agentcomm's tags if any.

    A foreign skill is a ``request`` skill taking ``{"text": ...}`` (any object).

    Example::

        for s in skills_from_card(card): print(s.id, s.kind)
    """
    out = []
    for raw in card.get("skills") or []:
        tags = [str(t) for t in raw.get("tags") or []]
        kind: SkillKind = "request"
        inp: dict[str, Any] = {"type": "object", "additionalProperties": True}
        outp: dict[str, Any] | None = None
        for t in tags:
            if t in (KIND_TAG + "request", KIND_TAG + "stream", KIND_TAG + "task"):
                kind = t[len(KIND_TAG) :]  # type: ignore[assignment]
            elif t.startswith(_INPUT):
                inp = _load(t[len(_INPUT) :], inp)
            elif t.startswith(_OUTPUT):
                outp = _load(t[len(_OUTPUT) :], None)
        sid = str(raw.get("id") or raw.get("name") or "skill")
        out.append(Skill(sid, kind, str(raw.get("description") or sid), inp, outp, tuple(tags)))
    return out


def _load(text: str, fallback: Any) -> Any:
    try:
        value = json.loads(text)
    except ValueError:
        return fallback
    return value if isinstance(value, dict) else fallback


def format_card(card: dict[str, Any]) -> str:
    """A card for people: who, where, what it can do, how to authenticate.

    Example::

        print(format_card(card))
    """
    lines = [f"{card.get('name', '?')} {card.get('version', '')}".rstrip()]
    if card.get("description"):
        lines.append(f"  {card['description']}")
    for i in card.get("supportedInterfaces") or []:
        lines.append(
            f"  interface: {i.get('protocolBinding')} {i.get('protocolVersion', '')} {i.get('url')}"
        )
    caps = card.get("capabilities") or {}
    on = [k for k in ("streaming", "pushNotifications", "extendedAgentCard") if caps.get(k)]
    lines.append(f"  capabilities: {', '.join(on) or 'none'}")
    schemes = card.get("securitySchemes") or {}
    lines.append(f"  auth: {', '.join(sorted(schemes)) or 'none'}")
    skills = skills_from_card(card)
    lines.append(f"  skills ({len(skills)}):")
    for s in skills:
        props = sorted((s.input_schema.get("properties") or {}).keys())
        args = f"({', '.join(props)})" if props else ""
        lines.append(f"    {s.id}{args} [{s.kind}]: {s.description}")
    return "\n".join(lines)
