"""``rt.a2a``: expose agents as A2A servers and call A2A agents as local ones.

This module never imports the A2A SDK at import time (``import agentcomm`` stays
light); :meth:`A2A.expose` and :meth:`A2A.connect` load it on first use and say
which extra to install when it is missing.

Example::

    async with Runtime(agents=[concierge]) as rt:
        exposure = await rt.a2a.expose("concierge", port=8000)
        remote = await rt.a2a.connect("far-concierge", url="http://127.0.0.1:9000/")
        print(await rt.agent("me").request("far-concierge", "translate", {"text": "hi"}))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from agentcomm.core.errors import ConfigurationError

if TYPE_CHECKING:
    from agentcomm.a2a.auth import Auth
    from agentcomm.a2a.client import A2AConnection
    from agentcomm.a2a.server import A2AExposure
    from agentcomm.a2a.skills import SkillKind
    from agentcomm.host.agent import Agent
    from agentcomm.host.runtime import Runtime

__all__ = ["A2A"]

_LOCAL = ("127.0.0.1", "::1", "localhost")


def _need_sdk() -> None:
    try:
        import a2a.server  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise ConfigurationError(
            f"A2A needs the extra: pip install 'agentcomm[a2a]' ({exc})"
        ) from None


class A2A:
    """The runtime's A2A bridge; use it as ``rt.a2a``.

    Example::

        exposure = await rt.a2a.expose("concierge")
        conn = await rt.a2a.connect("remote", url=exposure.url)
    """

    def __init__(self, runtime: Runtime) -> None:
        self._rt = runtime
        self.exposures: list[A2AExposure] = []
        self.connections: dict[str, A2AConnection] = {}

    @classmethod
    def of(cls, runtime: Runtime) -> A2A:
        """The runtime's bridge (``rt.a2a``), created on first use."""
        bridge: A2A = runtime.extension("a2a", cls)
        return bridge

    async def expose(
        self,
        agent: str | Agent,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        default: str | None = None,
        auth: Sequence[Auth] = (),
        description: str | None = None,
        version: str = "1.0.0",
        timeout: float | None = None,
        max_body: int = 1 << 20,
        public_url: str | None = None,
        allow_remote: bool = False,
        send_wait: float | None = None,
        bindings: Sequence[str] = ("JSONRPC", "HTTP+JSON"),
    ) -> A2AExposure:
        """Serve ``agent`` over A2A on HTTP; returns once it accepts connections.

        ``agent`` is a name in this runtime or an :class:`~agentcomm.Agent` that only
        describes the skills (the real one may run in another process, on NATS).
        ``port=0`` picks a free port (``exposure.url`` says which); ``default`` is
        the skill a message without ``metadata.skill`` goes to (the only skill when
        there is one); ``auth`` the schemes callers must use (``BearerAuth``,
        ``ApiKeyAuth``); ``max_body`` bounds a request's size. Any host other than
        the loopback needs ``allow_remote=True``. A blocking ``SendMessage`` to a task
        skill answers when the task ends or asks, or after ``send_wait`` seconds with
        the task as it is then (``None``: no limit); ``public_url`` is the URL the
        card announces (behind a proxy). ``bindings``: JSON-RPC at the URL and
        HTTP+JSON at the same URL, each in spec 1.0 and 0.3.

        Example::

            async with await rt.a2a.expose("concierge", port=8000) as exposure:
                await exposure.serve_forever()
        """
        _need_sdk()
        if host not in _LOCAL and not allow_remote:
            raise ConfigurationError(
                f"A2A serves on the loopback unless told: host={host!r} needs allow_remote=True"
            )
        if host not in _LOCAL and not auth:
            raise ConfigurationError("an A2A exposure beyond the loopback needs auth=[...]")
        target = self._agent(agent)
        from agentcomm.a2a.server import A2AExposure

        exposure = A2AExposure(
            self._rt,
            target,
            host=host,
            port=port,
            default=default,
            auth=auth,
            description=description,
            version=version,
            timeout=timeout,
            max_body=max_body,
            public_url=public_url,
            send_wait=send_wait,
            bindings=bindings,
        )
        await exposure.start()
        self.exposures.append(exposure)
        return exposure

    def _agent(self, agent: str | Agent) -> Agent:
        if isinstance(agent, str):
            found = self._rt.get_agent(agent)
            if found is None:
                raise ConfigurationError(
                    f"no agent {agent!r} in this runtime: pass its name, or an Agent that "
                    "describes it (running elsewhere)"
                )
            return found
        return agent

    async def connect(
        self,
        name: str,
        *,
        url: str,
        token: str | None = None,
        api_key: str | None = None,
        timeout: float = 30.0,
        card_path: str | None = None,
        kinds: Mapping[str, SkillKind] | None = None,
    ) -> A2AConnection:
        """Read the A2A agent card at ``url`` and add a proxy agent ``name`` for it.

        Any agent then calls its skills with ``request``, ``stream`` or
        ``start_task`` as it calls a local agent. ``token``/``api_key`` are sent the
        way the card's security schemes ask. A foreign card does not say how a skill
        is called: its skills are request handlers unless ``kinds`` says otherwise
        (``{"countdown": "stream", "research": "task"}``).

        Example::

            await rt.a2a.connect("concierge", url="http://127.0.0.1:8000/", token="...")
            print(await me.request("concierge", "translate", {"text": "hi"}))
        """
        _need_sdk()
        if name in self.connections or self._rt.get_agent(name) is not None:
            raise ConfigurationError(f"an agent named {name!r} already exists")
        from agentcomm.a2a.client import A2AConnection

        conn = A2AConnection(
            self._rt, name, url, token=token, api_key=api_key, timeout=timeout, kinds=kinds
        )
        await conn.open(card_path)
        self.connections[name] = conn
        await self._rt.attach(conn.agent)
        return conn

    async def aclose(self) -> None:
        """Stop every exposure and close every connection (the runtime does this at exit)."""
        exposures, self.exposures = self.exposures, []
        for x in exposures:
            await x.close()
        conns, self.connections = dict(self.connections), {}
        for c in conns.values():
            await c.aclose()

    def statistics(self) -> dict[str, Any]:
        """What is exposed and connected (for operators)."""
        return {
            "exposures": [{"agent": x.agent_name, "url": x.url} for x in self.exposures],
            "connections": [{"agent": n, "url": c.url} for n, c in self.connections.items()],
        }
