"""Core (durable=False) events under the generated broker authorization.

nats-server runs with the config made from the policy. Through the library, a
publisher's core events reach a subscriber (in a queue group) the policy allows;
with plain nats-py as an agent's user, a core publish or subscribe the policy does
not grant is refused by the server, and nothing reaches the subscribers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from agentcomm import Agent, Context, Runtime
from agentcomm.core.errors import PermissionDenied
from agentcomm.core.names import nats_inbox_prefix
from agentcomm.security.policy import Policy
from agentcomm.testing.contract.engine_support import until
from agentcomm.testing.extras import require_module
from agentcomm.testing.nats_server import NatsServer

require_module("nats")

import nats  # noqa: E402

from agentcomm.transports.nats.transport import NatsTransport  # noqa: E402

pytestmark = pytest.mark.nats

NS = "bc"
POLICY = """
[agents.probe]
publish = ["metrics.*"]

[agents.dash]
subscribe = ["metrics.*"]
"""
PASSWORDS = {"probe": "pw-probe", "dash": "pw-dash", "admin": "pw-admin"}


def _url(server: NatsServer, user: str) -> str:
    return f"nats://{user}:{PASSWORDS[user]}@127.0.0.1:{server.port}"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    config = Policy.from_toml(POLICY).nats_config(namespace=NS, passwords=PASSWORDS, admin="admin")
    with NatsServer(tmp_path_factory.mktemp("nats-core"), config=config) as srv:

        async def setup() -> None:
            admin = NatsTransport(_url(srv, "admin"), namespace=NS)
            await admin.start()
            try:
                await admin.setup()
            finally:
                await admin.close()

        asyncio.run(setup())
        yield srv


async def _raw(server: NatsServer, user: str, errors: list[str]) -> nats.NATS:
    async def on_error(exc: Exception) -> None:
        errors.append(str(exc).lower())

    return await nats.connect(
        server.url,
        user=user,
        password=PASSWORDS[user],
        inbox_prefix=nats_inbox_prefix(user, namespace=NS),
        error_cb=on_error,
        allow_reconnect=False,
    )


async def _refused(errors: list[str], subject: str) -> None:
    quoted = f'"{subject}"'
    await until(lambda: any("permissions violation" in e and quoted in e for e in errors))


async def test_the_broker_refuses_core_events_the_policy_forbids(server: NatsServer) -> None:
    policy = Policy.from_toml(POLICY)
    got: list[tuple[str, float]] = []
    arrived = asyncio.Event()
    dash = Agent("dash")

    @dash.on("metrics.*", group="screens", durable=False)
    async def show(value: float, ctx: Context) -> None:
        got.append((ctx.envelope.topic or "", value))
        arrived.set()

    sub_rt = Runtime(transport=NatsTransport(_url(server, "dash"), namespace=NS), agents=[dash],
                     access=policy)  # fmt: skip
    pub_rt = Runtime(transport=NatsTransport(_url(server, "probe"), namespace=NS), access=policy)
    async with sub_rt, pub_rt:
        probe = pub_rt.agent("probe")
        await probe.publish("metrics.cpu", {"value": 0.5}, durable=False)
        async with asyncio.timeout(10):
            await arrived.wait()
        with pytest.raises(PermissionDenied):  # the library refuses it first
            await probe.publish("orders.created", {"value": 1.0}, durable=False)

        # plain nats-py as probe: a subject outside its publish rules, and a forged
        # dash publish, are refused by the server
        errors: list[str] = []
        raw = await _raw(server, "probe", errors)
        forbidden = f"{NS}.e.orders.created"
        await raw.publish(forbidden, b"{}")
        await raw.flush()
        await _refused(errors, forbidden)
        # probe may not listen to core events (no subscribe rules)
        spy = await raw.subscribe(f"{NS}.e.metrics.*")
        await raw.flush()
        await _refused(errors, f"{NS}.e.metrics.*")
        await raw.close()
        del spy

        derr: list[str] = []
        raw_dash = await _raw(server, "dash", derr)
        await raw_dash.publish(f"{NS}.e.metrics.cpu", b"{}")  # dash has no publish rule
        await raw_dash.flush()
        await _refused(derr, f"{NS}.e.metrics.cpu")
        await raw_dash.close()

        # what the policy allows still flows, and nothing refused reached the subscriber
        arrived.clear()
        await probe.publish("metrics.mem", {"value": 0.25}, durable=False)
        async with asyncio.timeout(10):
            await arrived.wait()
        assert got == [("metrics.cpu", 0.5), ("metrics.mem", 0.25)]
        stats = sub_rt.events.statistics().core_subscription("screens")
        assert (stats.received, stats.handled, stats.invalid) == (2, 2, 0)
