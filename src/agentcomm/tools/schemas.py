"""Capability descriptions: ToolInfo, JSON Schemas of handlers, LLM tool definitions.

The lower half of ``agentcomm.tools``: the MCP server and client and the catalogue
(``rt.tools``) all describe capabilities with these.

Example::

    inp, out, wrapped = tool_schemas(agent.handlers["add"])
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import msgspec

from agentcomm.core.errors import ConfigurationError, RemoteError

if TYPE_CHECKING:
    from agentcomm.core.schema import HandlerSpec
    from agentcomm.host.agent import Agent
    from agentcomm.host.runtime import Runtime

__all__ = [
    "ToolError",
    "ToolInfo",
    "anthropic_tool",
    "llm_tool_name",
    "load_agents",
    "load_target",
    "openai_tool",
    "tool_schemas",
]

logger = logging.getLogger("agentcomm.mcp")

_LLM_NAME_BAD = re.compile(r"[^A-Za-z0-9_-]")


class ToolError(RemoteError):
    """An MCP tool reported a failure (``isError``); ``message`` is the tool's own text.

    Example::

        try:
            await conn.call_tool("lookup_customer", {"identifier": "nobody"})
        except ToolError as exc:
            print(exc.source, "said:", exc.message)
    """

    def __init__(self, source: str, message: str) -> None:
        super().__init__(source, "ToolError", message)
        self.args = (message,)  # str(exc) is the tool's own text; exc.source names the server

    def __str__(self) -> str:
        return self.message


class ToolInfo(msgspec.Struct, frozen=True, kw_only=True):
    """One capability in the runtime's catalogue (see :meth:`Tools.catalogue`).

    ``agent`` and ``handler`` are what :meth:`Agent.request` takes; ``name`` is the
    tool's MCP name (the renamed one, or the remote server's own); ``source`` is
    ``"agent"`` for our handlers and ``"mcp"`` for tools imported from ``server``;
    ``llm_name`` is unique in the runtime and fits LLM APIs (``[A-Za-z0-9_-]{1,64}``).

    Example::

        info = rt.tools.find("customer-data__lookup_customer")
        await me.request(info.agent, info.handler, {"identifier": "c1"})
    """

    name: str
    agent: str
    handler: str
    llm_name: str
    description: str
    input_schema: dict[str, Any]
    output_schema: dict[str, Any] | None = None
    source: str = "agent"
    server: str | None = None
    exposed: bool = True


#: What a handler whose types have no JSON Schema is described with: any JSON object.
_ANY_OBJECT: Mapping[str, Any] = {"type": "object", "properties": {}, "additionalProperties": True}
_schema_warned: set[tuple[str, str]] = set()


def _warn_schema_once(agent: str, handler: str, exc: Exception) -> None:
    if (agent, handler) not in _schema_warned and len(_schema_warned) < 1024:
        _schema_warned.add((agent, handler))
        logger.warning("%s.%s is described as any JSON object: %s", agent, handler, exc)


def _object_schema(schema: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(schema)
    out.pop("title", None)
    if out.get("type") != "object":
        return {"type": "object", "properties": {}, "additionalProperties": True}
    return out


def tool_schemas(spec: HandlerSpec) -> tuple[dict[str, Any], dict[str, Any] | None, bool]:
    """The MCP input schema, output schema and "wrapped" flag of a handler.

    An output that is not a JSON object is wrapped as ``{"result": value}`` (the MCP
    SDK's convention), since MCP structured content must be an object.

    Example::

        inp, out, wrapped = tool_schemas(agent.handlers["add"])
        assert inp["type"] == "object" and wrapped
    """
    if spec.mode == "none":
        inp: dict[str, Any] = {"type": "object", "properties": {}}
    else:
        inp = _object_schema(spec.input.json_schema())
    if spec.output is None:
        return inp, None, False
    out = dict(spec.output.json_schema())
    if out.get("type") == "object" and "anyOf" not in out:
        out.pop("title", None)
        return inp, out, False
    defs = out.pop("$defs", None)
    wrapper: dict[str, Any] = {
        "type": "object",
        "properties": {"result": out},
        "required": ["result"],
    }
    if defs:
        wrapper["$defs"] = defs
    return inp, wrapper, True


def llm_tool_name(agent: str, handler: str) -> str:
    """The LLM-safe unique name of ``agent``'s ``handler``: ``agent__handler``, <= 64 chars.

    Example::

        assert llm_tool_name("customer-data", "lookup") == "customer-data__lookup"
    """
    name = _LLM_NAME_BAD.sub("_", f"{agent}__{handler}")
    if len(name) <= 64:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[:55]}_{digest}"


def openai_tool(info: ToolInfo) -> dict[str, Any]:
    """An OpenAI-style function tool definition (Chat Completions ``tools=[...]``).

    Example::

        tools = [openai_tool(t) for t in rt.tools.catalogue()]
    """
    return {
        "type": "function",
        "function": {
            "name": info.llm_name,
            "description": info.description or f"{info.handler} of agent {info.agent}",
            "parameters": info.input_schema,
        },
    }


def anthropic_tool(info: ToolInfo) -> dict[str, Any]:
    """An Anthropic-style tool definition (Messages API ``tools=[...]``).

    Example::

        tools = [anthropic_tool(t) for t in rt.tools.catalogue()]
    """
    return {
        "name": info.llm_name,
        "description": info.description or f"{info.handler} of agent {info.agent}",
        "input_schema": info.input_schema,
    }


def load_agents(target: str) -> list[Agent]:
    """Import ``module:attr`` or ``file.py:attr``: an Agent, a list of them, a Runtime, or a
    function returning one of those (called with no arguments); its agents.

    Example::

        agents = load_agents("myapp.agents:customer_data")
    """
    from agentcomm.host.runtime import Runtime

    obj = load_target(target)
    return list(obj.agents.values()) if isinstance(obj, Runtime) else obj


def load_target(target: str) -> Runtime | list[Agent]:
    """Import ``module:attr`` or ``file.py:attr``: a Runtime as it is, or a list of agents.

    The attribute is an Agent, a list of them, a Runtime, or a function returning one
    of those (called with no arguments). A Runtime keeps its own policy, signing and
    limits (``agentcomm mcp serve`` serves it as it is).

    Example::

        rt = load_target("examples/mcp_conformance.py:app")
    """
    import importlib
    import importlib.util
    import sys
    from pathlib import Path

    from agentcomm.host.agent import Agent
    from agentcomm.host.runtime import Runtime

    where, sep, attr = target.rpartition(":")
    if not sep or not where or not attr:
        raise ConfigurationError(
            f"expected module:attr or file.py:attr, got {target!r} "
            "(e.g. myapp.agents:customer_data)"
        )
    if where.endswith(".py") or "/" in where:
        path = Path(where)
        if not path.is_file():
            raise ConfigurationError(f"no such file: {where}")
        modname = f"_agentcomm_target_{path.stem}"
        spec = importlib.util.spec_from_file_location(modname, path)
        if spec is None or spec.loader is None:
            raise ConfigurationError(f"cannot import {where}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[modname] = module
        spec.loader.exec_module(module)
    else:
        if "" not in sys.path:
            sys.path.insert(0, "")
        module = importlib.import_module(where)
    try:
        obj = getattr(module, attr)
    except AttributeError:
        raise ConfigurationError(f"{where} has no attribute {attr!r}") from None
    if callable(obj) and not isinstance(obj, Agent | Runtime | type):
        obj = obj()  # a factory: module:make_agents
    if isinstance(obj, Runtime):
        return obj
    if isinstance(obj, Agent):
        return [obj]
    if isinstance(obj, list | tuple) and all(isinstance(a, Agent) for a in obj):
        return list(obj)
    raise ConfigurationError(
        f"{target} is a {type(obj).__name__}; expected an Agent, a list of Agents, a Runtime "
        "or a function returning one"
    )
