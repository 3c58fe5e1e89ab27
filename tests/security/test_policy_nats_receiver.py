"""Receiver-side enforcement on NATS: the receiving runtime checks what a sender skipped.

A sender whose runtime has no policy, a flooder writing straight into the
transport, a signed request replayed to another agent and tool calls outside the
policy are each refused by the runtime that receives them (the broker runs without
an authorization config here; tests/security/test_policy_nats.py has the broker side).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest

from agentcomm import Agent, Runtime
from agentcomm.core.errors import NoResponders, PermissionDenied, UnknownHandler
from agentcomm.security.policy import Policy
from agentcomm.testing.extras import require_module
from agentcomm.testing.nats_server import NatsServer
from tests.security.nats_policy import POLICY, calc_and_bob

nats = require_module("nats")

from agentcomm.transports.nats.transport import NatsTransport  # noqa: E402

pytestmark = pytest.mark.nats


async def test_receiver_rechecks_the_policy_on_nats(nats_server: NatsServer) -> None:
    """A sender that skips its own check is refused by the receiving runtime too."""
    policy = Policy.from_toml(POLICY)
    calls: list[str] = []
    calc, _ = calc_and_bob(calls)
    ns = "r" + os.urandom(4).hex()
    async with (
        Runtime(
            transport=NatsTransport(nats_server.url, namespace=ns), agents=[calc], access=policy
        ),
        Runtime(transport=NatsTransport(nats_server.url, namespace=ns)) as open_rt,
    ):
        mallory = open_rt.agent("mallory")  # its runtime has no policy at all
        with pytest.raises(PermissionDenied, match="mallory"):
            await mallory.request("calc", "add", {"a": 1, "b": 1})
        assert await open_rt.agent("alice").request("calc", "add", {"a": 1, "b": 1}) == 2
    assert calls == ["calc.add"]


async def test_receiver_refuses_a_flooder_that_bypasses_its_rate_limit(
    nats_server: NatsServer,
) -> None:
    """On NATS the receiver holds each remote sender to the rate (twice the burst)."""
    from agentcomm.core.envelope import Envelope, encode_payload, new_id
    from agentcomm.core.flow import RateLimit
    from agentcomm.core.limits import Limits

    calls: list[str] = []
    calc, _ = calc_and_bob(calls)
    ns = "q" + os.urandom(4).hex()
    limits = Limits(sender_rate=RateLimit(5.0, burst=5))
    async with (
        Runtime(
            transport=NatsTransport(nats_server.url, namespace=ns), agents=[calc], limits=limits
        ),
        Runtime(transport=NatsTransport(nats_server.url, namespace=ns)) as raw_rt,
    ):
        start = asyncio.get_running_loop().time()
        refused = 0
        for _ in range(60):  # straight into the transport: no rate limit on this side
            env = Envelope(
                id=new_id(),
                kind="request",
                sender="flooder",
                recipient="calc",
                handler="add",
                payload=encode_payload({"a": 1, "b": 1}),
            )
            resp = await raw_rt.transport.request(env, 5.0)
            if resp.error is not None:
                assert resp.error.type == "RateLimited"
                refused += 1
        elapsed = asyncio.get_running_loop().time() - start
        other = raw_rt.agent("other")  # other senders are not affected
        assert await other.request("calc", "add", {"a": 2, "b": 2}) == 4
    served = 60 - refused
    assert served <= 10 + 5.0 * elapsed + 1
    assert len(calls) == served + 1


async def test_signed_message_replayed_to_another_agent_is_refused(
    nats_server: NatsServer,
) -> None:
    """A captured signed request for calc, published raw on bob's subject, is refused."""
    from agentcomm.core.envelope import decode_envelope, encode_envelope
    from agentcomm.security.signing import Identity, Security

    ids = [Identity.generate(n) for n in ("alice", "bob", "calc")]
    calls: list[str] = []
    calc, bob = calc_and_bob(calls)
    ns = "p" + os.urandom(4).hex()
    async with (
        Runtime(
            transport=NatsTransport(nats_server.url, namespace=ns),
            agents=[calc],
            security=Security(identities=ids),
        ) as rt,
        Runtime(  # another process: its own replay cache, which has not seen the message
            transport=NatsTransport(nats_server.url, namespace=ns),
            agents=[bob],
            security=Security(identities=ids),
        ),
    ):
        assert await rt.agent("alice").request("calc", "add", {"a": 1, "b": 1}) == 2
        captured = next(e for e in rt.message_log.recent() if e.kind == "request")
        assert captured.recipient == "calc"
        raw = await nats.connect(nats_server.url)
        try:
            msg = await raw.request(f"{ns}.a.bob.r", encode_envelope(captured), timeout=5)
        finally:
            await raw.close()
    resp = decode_envelope(msg.data)
    assert resp.error is not None
    assert resp.error.code == "authentication"
    assert "addressed to 'calc'" in resp.error.message
    assert calls == ["calc.add"]


TOOLS_POLICY = """
[agents.mcp-gateway]
call = ["crm.lookup", "crm.count"]
send = ["crm.lookup", "crm.count"]
[agents.crm]
[agents.clerk]
send = ["remote-crm"]
call = ["remote-crm.lookup"]
"""


async def test_tool_calls_outside_the_policy_are_refused_on_nats(nats_server: NatsServer) -> None:
    """An MCP-exposed tool and a proxied MCP tool, each refused by the policy on NATS."""
    mcp = require_module("mcp")
    import mcp_types as mt

    crm = Agent("crm")
    calls: list[str] = []

    @crm.handler
    async def lookup(identifier: str) -> str:
        "Look a customer up."
        calls.append(identifier)
        return f"customer {identifier}"

    @crm.handler
    async def delete_all() -> str:
        "Delete every customer."
        raise AssertionError("the policy must stop this call")

    @crm.handler
    async def count() -> int:
        "How many customers (the gateway may call it, the clerk may not)."
        raise AssertionError("the clerk's policy must stop this call")

    policy = Policy.from_toml(TOOLS_POLICY, source="tools.toml")
    ns = "t" + os.urandom(4).hex()

    def nats_rt(**kw: Any) -> Runtime:
        return Runtime(transport=NatsTransport(nats_server.url, namespace=ns), access=policy, **kw)

    async with nats_rt(agents=[crm]) as crm_rt:
        server = await crm_rt.tools.expose("crm")
        # 1. Exposed over MCP: the gateway's tool calls travel over NATS as requests.
        async with mcp.Client(server.server) as client:
            listed = sorted(t.name for t in (await client.list_tools()).tools)
            ok = await client.call_tool("lookup", {"identifier": "c1"})
            refused = await client.call_tool("delete_all", {})
        assert listed == ["count", "lookup"]  # only what the gateway may call is listed
        text = "".join(b.text for b in refused.content if isinstance(b, mt.TextContent))
        assert not ok.is_error
        assert refused.is_error
        assert "'mcp-gateway' may not call 'crm.delete_all'" in text
        # 2. Proxied: another process imports the MCP server as agent "remote-crm"; a
        # third one's clerk may reach it, but call only the lookup tool.
        async with (
            server.serve_http() as url,
            nats_rt() as proxy_rt,
            nats_rt() as clerk_rt,
        ):
            await proxy_rt.tools.connect("remote-crm", url=url)
            await proxy_rt.transport.flush()  # type: ignore[attr-defined]
            clerk = clerk_rt.agent("clerk")
            # Bounded wait until the proxy is reachable from the clerk's connection: in
            # about one full-suite run in six the first request found no responder
            # although the proxy had bound and flushed (under investigation).
            answer: Any = None
            for _ in range(50):
                try:
                    answer = await clerk.request("remote-crm", "lookup", {"identifier": "c2"})
                    break
                except NoResponders:
                    await proxy_rt.transport.flush()  # type: ignore[attr-defined]
                    await asyncio.sleep(0.1)
            assert answer == "customer c2"
            # A tool the MCP server does not list for the gateway is not proxied at all.
            with pytest.raises(UnknownHandler):
                await clerk.request("remote-crm", "delete_all", {})
            # The proxy refuses a listed one outside the clerk's rules, and the caller
            # gets the refusal as itself, naming the rule.
            with pytest.raises(PermissionDenied) as info:
                await clerk.request("remote-crm", "count", {})
            assert "'clerk' may not call 'remote-crm.count'" in str(info.value)
            assert "[agents.clerk] call = ['remote-crm.lookup']" in str(info.value)
    assert calls == ["c1", "c2"]
