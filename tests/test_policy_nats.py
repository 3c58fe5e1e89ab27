"""Broker-side enforcement: nats-server runs with the authorization config made from the policy.

A process that bypasses the library (a raw nats-py client logged in as an agent) is
still refused by the server; the library refuses the same operations earlier.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agentcomm import Agent, Runtime
from agentcomm.core.errors import NoResponders, PermissionDenied
from agentcomm.security.policy import Policy, nats_inbox_prefix
from agentcomm.testing.nats_server import NatsServer

nats = pytest.importorskip("nats")

from agentcomm.transports.nats.transport import NatsTransport  # noqa: E402

pytestmark = pytest.mark.nats

NS = "sec"
POLICY = """
[agents.alice]
send = ["calc.add"]
publish = ["orders.*"]
write = ["notes."]
[agents.calc]
[agents.bob]
send = ["calc.add"]
[agents.auditor]
subscribe = ["orders.*"]
subscriptions = ["audit"]
read = ["notes."]
"""
PASSWORDS = {"alice": "pw-alice", "calc": "pw-calc", "bob": "pw-bob", "auditor": "pw-auditor"}


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    passwords = PASSWORDS | {"admin": "pw-admin"}
    config = Policy.from_toml(POLICY).nats_config(namespace=NS, passwords=passwords, admin="admin")
    with NatsServer(tmp_path_factory.mktemp("nats-auth"), config=config) as server:
        # Agents may not create streams and buckets: the admin does, once.
        asyncio.run(_setup(f"nats://admin:pw-admin@127.0.0.1:{_port(server)}"))
        yield server


async def _setup(url: str) -> None:
    admin = NatsTransport(url, namespace=NS)
    await admin.start()
    try:
        await admin.setup()
    finally:
        await admin.close()


def _lib(nc: Any, user: str) -> NatsTransport:
    """The library's transport on an agent's own connection (with its inbox prefix)."""
    return NatsTransport(nc, namespace=NS, inbox_prefix=nats_inbox_prefix(user, namespace=NS))


async def _connect(server: NatsServer, user: str, errors: list[str] | None = None) -> Any:
    async def on_error(exc: Exception) -> None:
        if errors is not None:
            errors.append(str(exc))

    return await nats.connect(
        server.url,
        user=user,
        password=PASSWORDS[user],
        inbox_prefix=nats_inbox_prefix(user, namespace=NS),
        error_cb=on_error,
        allow_reconnect=False,
    )


def _agents(calls: list[str]) -> tuple[Agent, Agent]:
    calc, bob = Agent("calc"), Agent("bob")

    @calc.handler
    async def add(a: int, b: int) -> int:
        calls.append("calc.add")
        return a + b

    @bob.handler
    async def secret(text: str) -> str:
        calls.append("bob.secret")
        return "the secret"

    return calc, bob


async def _wait(cond: Any, what: str, timeout: float = 10.0) -> None:
    for _ in range(int(timeout / 0.01)):
        if cond():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"not reached within {timeout}s: {what}")


async def test_broker_refuses_a_process_that_bypasses_the_library(auth_server: NatsServer) -> None:
    policy = Policy.from_toml(POLICY)
    calls: list[str] = []
    calc, bob = _agents(calls)
    nc_calc = await _connect(auth_server, "calc")
    nc_bob = await _connect(auth_server, "bob")
    nc_alice = await _connect(auth_server, "alice")
    try:
        async with (
            Runtime(transport=_lib(nc_calc, "calc"), agents=[calc], access=policy),
            Runtime(transport=_lib(nc_bob, "bob"), agents=[bob], access=policy),
            Runtime(transport=_lib(nc_alice, "alice"), access=policy) as rt_alice,
        ):
            await nc_calc.flush()
            await nc_bob.flush()
            alice = rt_alice.agent("alice")
            assert await alice.request("calc", "add", {"a": 2, "b": 3}) == 5
            with pytest.raises(PermissionDenied):  # the library refuses first
                await alice.request("bob", "secret", {"text": "?"})

            errors: list[str] = []
            raw = await _connect(auth_server, "alice", errors)
            try:
                # Same credentials, no library: the broker drops it and says why.
                await raw.publish(f"{NS}.a.bob.r", b'{"id":"1","kind":"request","sender":"x"}')
                await raw.publish(f"{NS}.s.EVENTS.payments.done", b"{}")
                await raw.publish(f"$KV.{NS}_blackboard.plan.goal", b'"hijacked"')
                await raw.flush()
                await _wait(lambda: len(errors) >= 3, "three permission violations")
                await raw.subscribe(f"{NS}.a.calc.*")  # eavesdrop on calc's subject
                await raw.flush()
                await _wait(lambda: len(errors) >= 4, "a subscribe violation")
            finally:
                await raw.close()
    finally:
        for nc in (nc_calc, nc_bob, nc_alice):
            await nc.close()
    assert calls == ["calc.add"]
    assert all("permissions violation" in e.lower() for e in errors), errors
    assert any(f"{NS}.a.bob.r" in e for e in errors)
    assert any("payments.done" in e for e in errors)
    assert any(f"$kv.{NS}_blackboard.plan.goal" in e.lower() for e in errors), errors
    assert any("subscription" in e.lower() and f"{NS}.a.calc.*" in e for e in errors), errors


async def test_wrong_password_is_refused(auth_server: NatsServer) -> None:
    from nats.aio.client import Client

    async def quiet(exc: Exception) -> None:
        pass

    nc = Client()
    try:
        with pytest.raises(Exception, match=r"(?i)authorization"):
            await nc.connect(
                auth_server.url,
                user="alice",
                password="guess",
                allow_reconnect=False,
                connect_timeout=2,
                error_cb=quiet,
            )
    finally:
        await nc.close()  # nats-py keeps the socket of a refused connect otherwise


async def test_receiver_rechecks_the_policy_on_nats(nats_server: NatsServer) -> None:
    """A sender that skips its own check is refused by the receiving runtime too."""
    policy = Policy.from_toml(POLICY)
    calls: list[str] = []
    calc, _ = _agents(calls)
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


def test_generated_config_reads_passwords_from_the_environment(tmp_path: Path) -> None:
    from agentcomm.testing.nats_server import require_nats_server

    binary = require_nats_server()
    config = tmp_path / "auth.conf"
    config.write_text(Policy.from_toml(POLICY).nats_config(namespace=NS))
    assert "pw-" not in config.read_text()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTCOMM_NATS_PASSWORD")}
    missing = subprocess.run(
        [binary, "-t", "-c", str(config)], env=env, capture_output=True, text=True, check=False
    )
    assert missing.returncode != 0
    assert "AGENTCOMM_NATS_PASSWORD_" in missing.stdout + missing.stderr
    env |= {f"AGENTCOMM_NATS_PASSWORD_{n.upper()}": pw for n, pw in PASSWORDS.items()}
    ok = subprocess.run(
        [binary, "-t", "-c", str(config)], env=env, capture_output=True, text=True, check=False
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr


async def test_receiver_refuses_a_flooder_that_bypasses_its_rate_limit(
    nats_server: NatsServer,
) -> None:
    """On NATS the receiver holds each remote sender to the rate (twice the burst)."""
    from agentcomm.core.envelope import Envelope, encode_payload, new_id
    from agentcomm.core.flow import RateLimit
    from agentcomm.core.limits import Limits

    calls: list[str] = []
    calc, _ = _agents(calls)
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
    calc, bob = _agents(calls)
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


def _port(server: NatsServer) -> int:
    assert server.port is not None
    return server.port


async def test_each_agent_reads_replies_only_under_its_own_inbox(auth_server: NatsServer) -> None:
    """Replies go to ``_INBOX.<ns>.<agent>``; the broker keeps other agents out of it."""
    from agentcomm.core.errors import ConfigurationError

    policy = Policy.from_toml(POLICY)
    calls: list[str] = []
    calc, _ = _agents(calls)
    nc_calc = await _connect(auth_server, "calc")
    nc_alice = await _connect(auth_server, "alice")
    # bob logs in through the URL: the transport derives its inbox prefix from the user
    bob_url = f"nats://bob:pw-bob@127.0.0.1:{_port(auth_server)}"
    bob_transport = NatsTransport(bob_url, namespace=NS)
    assert bob_transport.inbox_prefix == "_INBOX.sec.bob"
    try:
        async with (
            Runtime(transport=_lib(nc_calc, "calc"), agents=[calc], access=policy),
            Runtime(transport=_lib(nc_alice, "alice"), access=policy) as rt_alice,
            Runtime(transport=bob_transport, access=policy) as rt_bob,
        ):
            await nc_calc.flush()
            assert await rt_alice.agent("alice").request("calc", "add", {"a": 1, "b": 2}) == 3
            assert await rt_bob.agent("bob").request("calc", "add", {"a": 3, "b": 4}) == 7

            errors: list[str] = []
            raw = await _connect(auth_server, "alice", errors)
            try:
                await raw.subscribe("_INBOX.sec.bob.>")  # bob's replies
                await raw.flush()
                await _wait(lambda: len(errors) >= 1, "a subscribe violation on bob's inbox")
                await raw.subscribe("_INBOX.>")  # everybody's replies
                await raw.flush()
                await _wait(lambda: len(errors) >= 2, "a subscribe violation on _INBOX.>")
            finally:
                await raw.close()
    finally:
        for nc in (nc_calc, nc_alice):
            await nc.close()
    assert calls == ["calc.add", "calc.add"]
    assert all("permissions violation" in e.lower() for e in errors), errors
    assert any('"_inbox.sec.bob.>"' in e.lower() for e in errors), errors

    # A ready client connected with nats-py's default prefix is caught at start.
    plain = await nats.connect(auth_server.url, user="alice", password="pw-alice")
    try:
        wrong = NatsTransport(plain, namespace=NS, inbox_prefix="_INBOX.sec.alice")
        with pytest.raises(ConfigurationError, match=r"inbox_prefix='_INBOX\.sec\.alice'"):
            async with Runtime(transport=wrong):
                pass
    finally:
        await plain.close()


async def test_jetstream_use_is_limited_to_what_the_policy_needs(
    auth_server: NatsServer,
) -> None:
    """The library's own JetStream traffic passes; the same user's raw detours are refused."""
    from agentcomm.core.flow import RetryPolicy

    policy = Policy.from_toml(POLICY)
    seen: list[str] = []
    broken = [True]
    changed = asyncio.Event()
    auditor = Agent("auditor")

    @auditor.on("orders.*", retry=RetryPolicy(max_attempts=2, backoff=0.005, jitter=0.0))
    async def audit(order: str) -> None:
        if broken[0]:
            raise RuntimeError("ledger offline")
        seen.append(order)

    lib_errors: list[str] = []
    nc_alice = await _connect(auth_server, "alice", lib_errors)
    nc_auditor = await _connect(auth_server, "auditor", lib_errors)
    try:
        async with (
            Runtime(
                transport=_lib(nc_auditor, "auditor"), agents=[auditor], access=policy
            ) as rt_auditor,
            Runtime(transport=_lib(nc_alice, "alice"), access=policy) as rt_alice,
        ):
            alice = rt_alice.agent("alice")
            board = auditor.board
            watch = await board.subscribe("notes.", lambda change: changed.set())
            await alice.board.write("notes.n1", "first")  # a write reads the key too
            await alice.board.write("notes.n1", "second")
            await alice.publish("orders.created", {"order": "o1"})
            dl = await rt_auditor.events.wait_dead_letter(timeout=10)
            broken[0] = False
            assert await rt_auditor.events.redrive(dl.sequence) is True
            entry = await board.read("notes.n1")
            assert entry is not None
            assert entry.value == "second"
            assert list(await board.read_prefix("notes.")) == ["notes.n1"]
            async with asyncio.timeout(10):
                await changed.wait()
            await watch.aclose()
            with pytest.raises(PermissionDenied):  # the library refuses first
                await alice.board.read("notes.n1")

            errors: list[str] = []
            raw = await _connect(auth_server, "alice", errors)
            try:
                kv, kvs = f"KV_{NS}_blackboard", f"$KV.{NS}_blackboard"
                refused = [
                    f"$JS.API.DIRECT.GET.{kv}",  # a batched read of the whole bucket
                    f"$JS.API.DIRECT.GET.{kv}.{kvs}.plan.secret",  # a key alice cannot write
                    f"$JS.API.CONSUMER.CREATE.{kv}",  # a watch
                    f"$JS.API.CONSUMER.DURABLE.CREATE.{NS}_EVENTS.spy",  # a subscription
                    f"$JS.API.DIRECT.GET.{NS}_EVENTS",  # reading events by sequence
                    f"$JS.API.STREAM.DELETE.{NS}_EVENTS",
                    f"$JS.API.STREAM.CREATE.{NS}_spy",  # a stream capturing others' subjects
                ]
                for subject in refused:
                    await raw.publish(
                        subject, b"{}", reply=nats_inbox_prefix("alice", namespace=NS)
                    )
                await raw.flush()
                await _wait(lambda: len(errors) >= len(refused), "one violation per detour")
            finally:
                await raw.close()
    finally:
        for nc in (nc_alice, nc_auditor):
            await nc.close()
    assert lib_errors == []
    assert seen == ["o1"]
    assert all("permissions violation" in e.lower() for e in errors), errors
    for subject in refused:
        assert any(subject.lower() in e.lower() for e in errors), (subject, errors)


TOOLS_POLICY = """
[agents.mcp-gateway]
call = ["crm.lookup"]
send = ["crm.lookup"]
[agents.crm]
[agents.clerk]
send = ["remote-crm"]
call = ["remote-crm.lookup"]
"""


async def test_tool_calls_outside_the_policy_are_refused_on_nats(nats_server: NatsServer) -> None:
    """An MCP-exposed tool and a proxied MCP tool, each refused by the policy on NATS."""
    mcp = pytest.importorskip("mcp")
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

    policy = Policy.from_toml(TOOLS_POLICY, source="tools.toml")
    ns = "t" + os.urandom(4).hex()

    def nats_rt(**kw: Any) -> Runtime:
        return Runtime(transport=NatsTransport(nats_server.url, namespace=ns), access=policy, **kw)

    async with nats_rt(agents=[crm]) as crm_rt:
        server = await crm_rt.tools.expose("crm")
        # 1. Exposed over MCP: the gateway's tool calls travel over NATS as requests.
        async with mcp.Client(server.server) as client:
            ok = await client.call_tool("lookup", {"identifier": "c1"})
            refused = await client.call_tool("delete_all", {})
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
            # The proxy refuses it, and the caller gets the refusal as itself,
            # naming the rule.
            with pytest.raises(PermissionDenied) as info:
                await clerk.request("remote-crm", "delete_all", {})
            assert "'clerk' may not call 'remote-crm.delete_all'" in str(info.value)
            assert "[agents.clerk] call = ['remote-crm.lookup']" in str(info.value)
    assert calls == ["c1", "c2"]
