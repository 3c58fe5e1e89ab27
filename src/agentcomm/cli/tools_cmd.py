"""``agentcomm mcp serve`` and ``agentcomm tools``: run agents and serve or list their tools."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from agentcomm.api import Runtime
from agentcomm.core.errors import ConfigurationError
from agentcomm.host.runtime import Runtime as _HostRuntime
from agentcomm.tools.catalogue import anthropic_tool, load_agents, openai_tool
from agentcomm.tools.schemas import load_target

__all__ = ["list_tools_cli", "serve_agents"]


def _parse_address(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep:
        host, port = "127.0.0.1", address
    try:
        return host.strip("[]") or "127.0.0.1", int(port)
    except ValueError:
        raise ConfigurationError(f"expected HOST:PORT, got {address!r}") from None


async def serve_agents(
    targets: Sequence[str],
    *,
    http: str | None = None,
    name: str | None = None,
    board: Sequence[str] = (),
    resumable: bool = False,
) -> int:
    """Run agents and serve them over MCP: stdio by default, or streamable HTTP at ``http``.

    Example::

        asyncio.run(serve_agents(["myapp.agents:customer_data"], http="127.0.0.1:8000"))
    """
    import sys

    loaded = [load_target(t) for t in targets]
    runtimes = [x for x in loaded if isinstance(x, _HostRuntime)]
    if runtimes and len(loaded) > 1:
        raise ConfigurationError("a Runtime target is served alone; give it as the only target")
    if runtimes:  # served as it is: its policy, signing and limits stay
        rt: Any = runtimes[0]
        agents = [a for n, a in sorted(rt.agents.items()) if a.handlers or _declares(a)]
    else:
        agents = [a for x in loaded if not isinstance(x, _HostRuntime) for a in x]
        rt = Runtime(agents=agents)
    async with rt:
        server = await rt.tools.expose(*agents, name=name, board=board)
        if http is None:
            await server.run_stdio()
        else:
            host, port = _parse_address(http)

            def ready(url: str) -> None:
                print(f"agentcomm: serving {server.tool_names()} at {url}", file=sys.stderr)

            await server.run_http(host, port, on_ready=ready, resumable=resumable)
    return 0


def _declares(agent: Any) -> bool:
    return bool(agent.declarations.get("prompts") or agent.declarations.get("resources"))


async def list_tools_cli(
    targets: Sequence[str],
    *,
    urls: Sequence[str] = (),
    commands: Sequence[str] = (),
    as_json: bool = False,
    llm: str | None = None,
    out: Any = None,
) -> int:
    """Print the catalogue of the given agents (and of MCP servers, ``NAME=URL`` / ``NAME=CMD``).

    Example::

        asyncio.run(list_tools_cli(["myapp.agents:customer_data"], as_json=True))
    """
    import shlex
    import sys

    out = out or sys.stdout
    agents = [a for t in targets for a in load_agents(t)]
    async with Runtime(agents=agents) as rt:
        for spec in urls:
            cname, _, url = spec.partition("=")
            await rt.tools.connect(cname, url=url)
        for spec in commands:
            cname, _, cmd = spec.partition("=")
            await rt.tools.connect(cname, command=shlex.split(cmd))
        infos = rt.tools.catalogue()
        data: Any = None
        if llm == "openai":
            data = [openai_tool(i) for i in infos]
        elif llm == "anthropic":
            data = [anthropic_tool(i) for i in infos]
        elif as_json:
            data = infos
        if data is not None:
            print(msgspec.json.format(msgspec.json.encode(data)).decode(), file=out)
        else:
            for i in infos:
                origin = f"mcp:{i.server}" if i.source == "mcp" else "agent"
                args = ", ".join(i.input_schema.get("properties", {}))
                print(f"{i.agent}.{i.handler}({args})  [{origin}]  {i.description}", file=out)
            if not infos:
                print("no tools", file=out)
    return 0
