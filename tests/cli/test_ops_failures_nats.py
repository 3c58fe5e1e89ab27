"""``agentcomm stats`` shows the failures each runtime counted, background work included."""

from __future__ import annotations

import os
import socket
from typing import Any

import pytest

from agentcomm.testing.extras import require_module

require_module("nats")

from agentcomm import Agent, PermissionDenied, Runtime  # noqa: E402
from agentcomm.observability.presence import Presence, read_presence  # noqa: E402
from agentcomm.testing.nats_server import NatsServer  # noqa: E402
from agentcomm.transports.nats.transport import NatsTransport  # noqa: E402
from tests.cli.test_ops_nats import cli, lines, wait_for  # noqa: E402

pytestmark = [pytest.mark.nats, pytest.mark.slow]


@pytest.mark.timeout(90)
async def test_stats_shows_failures_by_runtime_and_kind(nats_server: NatsServer) -> None:
    def access(agent: str, action: str, target: str) -> None:
        if (agent, action) == ("late", "subscribe"):
            raise PermissionDenied(f"{agent} may not subscribe to {target}")

    fragile = Agent("fragile")

    @fragile.handler
    async def crash(x: int) -> None:
        raise ValueError(f"cannot take {x}")

    ns = "fail" + os.urandom(4).hex()
    opts = ["--nats", nats_server.url, "--namespace", ns]
    rt = Runtime(NatsTransport(nats_server.url, namespace=ns), agents=[fragile], access=access)
    Presence.install(rt, interval=0.1)
    async with rt:
        late = rt.agent("late")

        @late.on("secret.*")
        async def peek(x: int) -> None: ...

        await late.send("fragile", "crash", {"x": 7})  # a notification whose handler raises

        async def announced() -> bool:
            _, runtimes = await read_presence(rt.transport)
            return bool(runtimes) and set(runtimes[0].errors) == {"message", "subscription_start"}

        await wait_for(announced, "the failures in presence")

        rc, out, err = await cli("stats", *opts, "--json")
        assert rc == 0, err
        (snap,) = lines(out)
        rows: dict[str, Any] = {f["kind"]: f for f in snap["failures"]}
        assert set(rows) == {"message", "subscription_start"}
        assert rows["subscription_start"]["count"] == 1
        assert "late may not subscribe to secret.*" in rows["subscription_start"]["last_error"]
        assert "ValueError: cannot take 7" in rows["message"]["last_error"]
        assert rows["message"]["runtime"] == f"{socket.gethostname()}:{os.getpid()}"

        rc, out, err = await cli("stats", *opts)
        assert rc == 0, err
        assert "failures (counted by each runtime" in out
        assert "subscription_start" in out
        assert "late may not subscribe" in out
