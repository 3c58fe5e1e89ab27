"""Broker-side enforcement: nats-server runs with the authorization config made from the policy.

A process that bypasses the library (a raw nats-py client logged in as an agent) is
still refused by the server; the library refuses the same operations earlier. The
receiving runtime's own checks on NATS are in tests/security/test_policy_nats_receiver.py.
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
from agentcomm.core.errors import PermissionDenied
from agentcomm.security.policy import Policy, nats_inbox_prefix
from agentcomm.testing.extras import require_module
from agentcomm.testing.nats_server import NatsServer
from tests.security.nats_policy import NS, PASSWORDS, POLICY, calc_and_bob

nats = require_module("nats")

from agentcomm.transports.nats.transport import NatsTransport  # noqa: E402

pytestmark = pytest.mark.nats


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


async def _wait(cond: Any, what: str, timeout: float = 10.0) -> None:
    for _ in range(int(timeout / 0.01)):
        if cond():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"not reached within {timeout}s: {what}")


async def test_broker_refuses_a_process_that_bypasses_the_library(auth_server: NatsServer) -> None:
    policy = Policy.from_toml(POLICY)
    calls: list[str] = []
    calc, bob = calc_and_bob(calls)
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
                await raw.publish(f"{NS}.s.EVENTS.0.payments.done", b"{}")
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


def _port(server: NatsServer) -> int:
    assert server.port is not None
    return server.port


async def test_each_agent_reads_replies_only_under_its_own_inbox(auth_server: NatsServer) -> None:
    """Replies go to ``_INBOX.<ns>.<agent>``; the broker keeps other agents out of it."""
    from agentcomm.core.errors import ConfigurationError

    policy = Policy.from_toml(POLICY)
    calls: list[str] = []
    calc, _ = calc_and_bob(calls)
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
