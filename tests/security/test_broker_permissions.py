"""Issue 18, broker permissions: with the generated authorization, a raw client is held.

nats-server runs with the config made from the policy; the admin user creates the
streams and buckets (``NatsTransport.setup``); the agents run in the library as their
own users. Then each agent's user, with plain nats-py (the attacker), tries what was
seen in issue 18 (pulling and acknowledging another agent's durable consumer, shrinking
the event stream, widening its subjects) and the other detours: every one must be
refused by the server, and the agents keep doing everything the policy allows.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agentcomm import Agent, Runtime
from agentcomm.core.errors import ConfigurationError, PermissionDenied
from agentcomm.core.names import nats_inbox_prefix
from agentcomm.security.policy import Policy
from agentcomm.testing.extras import require_module
from agentcomm.testing.nats_server import NatsServer

require_module("nats")

import nats  # noqa: E402
import nats.errors  # noqa: E402
import nats.js.errors  # noqa: E402
from nats.js import api  # noqa: E402

from agentcomm.observability.presence import Presence, read_presence  # noqa: E402
from agentcomm.transports.nats.transport import NatsTransport  # noqa: E402

pytestmark = pytest.mark.nats

NS = "bp"
EVENTS, DLQ = f"{NS}_EVENTS", f"{NS}_DLQ"
KV, KVS = f"KV_{NS}_blackboard", f"$KV.{NS}_blackboard"
POLICY = """
[agents.shop]
publish = ["orders.*", "status.up"]
write = ["orders."]

[agents.billing]
subscribe = ["orders.*"]
subscriptions = ["charge"]
groups = ["billing-workers"]
read = ["orders."]
write = ["invoices."]

[agents.spy]
subscribe = ["status.>"]
subscriptions = ["watch"]
read = ["public."]
send = ["billing"]
"""
PASSWORDS = {"shop": "pw-shop", "billing": "pw-billing", "spy": "pw-spy", "admin": "pw-admin"}


def _url(server: NatsServer, user: str) -> str:
    return f"nats://{user}:{PASSWORDS[user]}@127.0.0.1:{server.port}"


def _config() -> str:
    return Policy.from_toml(POLICY).nats_config(namespace=NS, passwords=PASSWORDS, admin="admin")


async def _admin_setup(server: NatsServer) -> list[str]:
    admin = NatsTransport(_url(server, "admin"), namespace=NS)
    await admin.start()
    try:
        return await admin.setup()
    finally:
        await admin.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    with NatsServer(tmp_path_factory.mktemp("nats-perms"), config=_config()) as srv:
        lines = asyncio.run(_admin_setup(srv))
        assert lines == [
            f"created stream {EVENTS}",
            f"created stream {DLQ}",
            f"created bucket {KV}",
            f"created bucket KV_{NS}_presence",
        ]
        yield srv


async def _wait(cond: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        if loop.time() > deadline:
            raise AssertionError(f"not reached within {timeout}s: {what}")
        await asyncio.sleep(0.01)


class Attacker:
    """A plain nats-py client logged in as an agent's user: no library in between."""

    def __init__(self, nc: Any, errors: list[str]) -> None:
        self.nc = nc
        self.errors = errors
        self.js = nc.jetstream(timeout=0.5)

    @classmethod
    async def connect(cls, server: NatsServer, user: str) -> Attacker:
        errors: list[str] = []

        async def on_error(exc: Exception) -> None:
            errors.append(str(exc).lower())

        nc = await nats.connect(
            server.url,
            user=user,
            password=PASSWORDS[user],
            inbox_prefix=nats_inbox_prefix(user, namespace=NS),
            error_cb=on_error,
            allow_reconnect=False,
        )
        return cls(nc, errors)

    def refused(self, subject: str) -> bool:
        return any(
            "permissions violation" in e and f'"{subject.lower()}"' in e for e in self.errors
        )

    async def try_publish(self, subject: str, body: bytes = b"{}") -> None:
        """Send like a request would (reply to its own inbox), then wait for the verdict."""
        inbox = self.nc.new_inbox()
        sub = await self.nc.subscribe(inbox)
        await self.nc.publish(subject, body, reply=inbox)
        await self.nc.flush()
        await _wait(lambda: self.refused(subject), f"the broker refusing {subject}")
        with pytest.raises(nats.errors.TimeoutError):  # and nothing came back
            await sub.next_msg(timeout=0.05)
        await sub.unsubscribe()

    async def expect_refused(self, call: Any, subject: str) -> None:
        """A nats-py JetStream call whose request the broker drops: it times out."""
        with pytest.raises(nats.errors.TimeoutError):
            await call
        assert self.refused(subject), (subject, self.errors)

    async def close(self) -> None:
        await self.nc.close()


def _create_body(name: str, filt: str) -> bytes:
    config = {"name": name, "durable_name": name, "filter_subject": filt, "ack_policy": "explicit"}
    return json.dumps({"stream_name": EVENTS, "config": config}).encode()


def _agents(log: dict[str, list[str]]) -> tuple[Agent, Agent, Agent]:
    shop, billing, spy = Agent("shop"), Agent("billing"), Agent("spy")

    @billing.on("orders.*", name="charge", start="all")
    async def charge(order: str) -> None:
        log["charge"].append(order)

    @billing.on("orders.*", name="share", group="billing-workers", start="all")
    async def share(order: str) -> None:
        log["share"].append(order)

    @billing.handler
    async def total() -> int:
        return len(log["charge"])

    @spy.on("status.>", name="watch", start="all")
    async def watch(state: str) -> None:
        log["watch"].append(state)

    return shop, billing, spy


def _runtime(server: NatsServer, user: str, agents: list[Agent], policy: Policy) -> Runtime:
    rt = Runtime(transport=NatsTransport(_url(server, user), namespace=NS), agents=agents,
                 access=policy)  # fmt: skip
    Presence.install(rt, interval=0.2)
    return rt


async def test_raw_clients_are_refused_and_the_agents_keep_working(server: NatsServer) -> None:
    policy = Policy.from_toml(POLICY)
    log: dict[str, list[str]] = {"charge": [], "share": [], "watch": [], "changes": []}
    shop, billing, spy = _agents(log)
    async with (
        _runtime(server, "shop", [shop], policy) as rt_shop,
        _runtime(server, "billing", [billing], policy) as rt_billing,
        _runtime(server, "spy", [spy], policy) as rt_spy,
    ):
        # -- what the policy allows, through the library ------------------------------
        board = billing.board
        seen = asyncio.Event()

        def on_change(change: Any) -> None:
            log["changes"].append(change.key)
            seen.set()

        watch = await board.subscribe("orders.", on_change)
        for i in range(20):
            await shop.publish("orders.created", {"order": f"o{i}"})
        await shop.publish("status.up", {"state": "open"})
        await shop.board.write("orders.o1", {"total": 5})
        await billing.board.write("invoices.i1", {"order": "o1"})
        await _wait(lambda: len(log["charge"]) == 20 and len(log["share"]) == 20, "20 events")
        await _wait(lambda: log["watch"] == ["open"], "the status event")
        async with asyncio.timeout(10):
            await seen.wait()
        entry = await board.read("orders.o1")
        assert entry is not None
        assert entry.value == {"total": 5}
        assert list(await board.read_prefix("orders.")) == ["orders.o1"]
        assert [e.value for e in await board.history("orders.o1")] == [{"total": 5}]
        assert await spy.request("billing", "total", {}) == 20
        assert await rt_billing.events.replay("billing", "charge") == 20  # its replay consumer
        with pytest.raises(PermissionDenied):  # the library refuses first
            await spy.board.read("orders.o1")
        await watch.aclose()
        admin = NatsTransport(_url(server, "admin"), namespace=NS)
        await admin.start()
        try:
            await admin.kv_put("blackboard", "payroll.salary", b'"secret"')

            async def present() -> set[str]:
                return {a.agent for a in (await read_presence(admin))[0]}

            for _ in range(500):
                if await present() >= {"shop", "billing", "spy"}:
                    break
                await asyncio.sleep(0.02)
            assert await present() >= {"shop", "billing", "spy"}

            # -- the spy: another agent's consumer --------------------------------------
            spy_raw = await Attacker.connect(server, "spy")
            try:
                victim = "billing__charge"
                await spy_raw.try_publish(
                    f"$JS.API.CONSUMER.MSG.NEXT.{EVENTS}.{victim}", b'{"batch":20}'
                )
                await spy_raw.try_publish(f"$JS.API.CONSUMER.MSG.NEXT.{EVENTS}.billing-workers")
                await spy_raw.try_publish(f"$JS.ACK.{EVENTS}.{victim}.1.1.1.0.0", b"+ACK")
                await spy_raw.try_publish(f"$JS.ACK.{EVENTS}.{victim}.1.2.2.0.0", b"-NAK")
                await spy_raw.try_publish(f"$JS.API.CONSUMER.INFO.{EVENTS}.{victim}")
                await spy_raw.try_publish(f"$JS.API.CONSUMER.DELETE.{EVENTS}.{victim}")
                # re-creating billing's consumer with the spy's own allowed filter
                hijack = f"$JS.API.CONSUMER.CREATE.{EVENTS}.{victim}.{NS}.s.EVENTS.*.status.>"
                await spy_raw.try_publish(hijack, _create_body(victim, f"{NS}.s.EVENTS.*.status.>"))
                # -- its own consumer name, on a forbidden topic ------------------------
                for filt in ("orders.*", "orders.created", ">", "*", "status"):
                    subject = f"$JS.API.CONSUMER.CREATE.{EVENTS}.spy__watch.{NS}.s.EVENTS.*.{filt}"
                    await spy_raw.try_publish(
                        subject, _create_body("spy__watch", f"{NS}.s.EVENTS.*.{filt}")
                    )
                for subject in (
                    f"$JS.API.CONSUMER.CREATE.{EVENTS}.spy__watch.>",  # wider than the rule
                    f"$JS.API.CONSUMER.CREATE.{EVENTS}.spy__watch",  # filter in the body
                    f"$JS.API.CONSUMER.DURABLE.CREATE.{EVENTS}.spy__watch",  # ditto
                    f"$JS.API.CONSUMER.CREATE.{EVENTS}",  # an ephemeral, any filter
                    f"$JS.API.CONSUMER.CREATE.{EVENTS}.spy.{NS}.s.EVENTS.*.status.>",  # a new name
                ):
                    await spy_raw.try_publish(
                        subject, _create_body("spy__watch", f"{NS}.s.EVENTS.*.orders.*")
                    )
                # The allowed create subject with another filter in the body: the server
                # itself refuses it (the filter in the subject must be the body's).
                ok = f"$JS.API.CONSUMER.CREATE.{EVENTS}.spy__watch.{NS}.s.EVENTS.*.status.>"
                resp = await spy_raw.nc.request(
                    ok, _create_body("spy__watch", f"{NS}.s.EVENTS.*.orders.*"), timeout=5
                )
                assert json.loads(resp.data)["error"]["err_code"] == 10131
                # -- blackboard keys outside its read rules -----------------------------
                for key in ("payroll.salary", "orders.o1", ">"):
                    await spy_raw.try_publish(f"$JS.API.DIRECT.GET.{KV}.{KVS}.{key}", b"")
                await spy_raw.try_publish(
                    f"$JS.API.DIRECT.GET.{KV}", b'{"multi_last":["$KV.bp_blackboard.>"]}'
                )
                for filt in ("payroll.>", "orders.>", ">"):
                    await spy_raw.try_publish(f"$JS.API.CONSUMER.CREATE.{KV}.x.{KVS}.{filt}")
                await spy_raw.try_publish(f"$JS.API.CONSUMER.CREATE.{KV}")  # filter in body
                await spy_raw.try_publish(f"$KV.{NS}_presence.agents.billing.fake", b"{}")
            finally:
                await spy_raw.close()
            # billing still got every event (and the replay's 20 again): nobody else
            # pulled or acknowledged them
            assert len(log["charge"]) == 40
            assert sorted(set(log["charge"])) == sorted(f"o{i}" for i in range(20))
            info = await admin.client.jetstream().consumer_info(EVENTS, "billing__charge")
            assert info.num_ack_pending == 0
            assert info.num_pending == 0

            # -- billing (the user with the most JetStream rights) on streams ----------
            billing_raw = await Attacker.connect(server, "billing")
            try:
                js = billing_raw.js
                cfg = api.StreamConfig(name=EVENTS, subjects=[f"{NS}.s.EVENTS.>"], max_msgs=1)
                await billing_raw.expect_refused(
                    js.update_stream(cfg), f"$JS.API.STREAM.UPDATE.{EVENTS}"
                )
                wider = api.StreamConfig(name=EVENTS, subjects=[f"{NS}.s.EVENTS.>", f"{NS}.a.>"])
                billing_raw.errors.clear()
                await billing_raw.expect_refused(
                    js.update_stream(wider), f"$JS.API.STREAM.UPDATE.{EVENTS}"
                )
                for name in (EVENTS, DLQ, KV, f"KV_{NS}_presence"):
                    await billing_raw.expect_refused(
                        js.delete_stream(name), f"$JS.API.STREAM.DELETE.{name}"
                    )
                    await billing_raw.try_publish(f"$JS.API.STREAM.PURGE.{name}")
                kv_cfg = api.StreamConfig(name=KV, subjects=[f"{KVS}.>"], max_msgs_per_subject=1)
                await billing_raw.expect_refused(
                    js.update_stream(kv_cfg), f"$JS.API.STREAM.UPDATE.{KV}"
                )
                spy_stream = api.StreamConfig(name=f"{NS}_spy", subjects=[f"{NS}.a.>"])
                await billing_raw.expect_refused(
                    js.add_stream(spy_stream), f"$JS.API.STREAM.CREATE.{NS}_spy"
                )
                await billing_raw.try_publish(f"$JS.API.STREAM.CREATE.{NS}_EVENTS")
                await billing_raw.try_publish(f"$JS.API.STREAM.CREATE.{KV}")
                # its own consumer, with a filter wider than its rule 'orders.*'
                for filt in (">", "*.>", "*.orders.a.>", "*.*"):
                    await billing_raw.try_publish(
                        f"$JS.API.CONSUMER.CREATE.{EVENTS}.billing__charge.{NS}.s.EVENTS.{filt}"
                    )
                # a key it may not read (payroll.) nor write
                await billing_raw.try_publish(f"$JS.API.DIRECT.GET.{KV}.{KVS}.payroll.salary")
            finally:
                await billing_raw.close()
            js_admin = admin.client.jetstream()
            si = await js_admin.stream_info(EVENTS)
            assert si.state.messages == 21  # 20 orders and the status event, none deleted
            assert si.config.max_msgs == 100_000
            assert si.config.subjects == [f"{NS}.s.EVENTS.>"]
            assert (await js_admin.stream_info(KV)).config.max_msgs_per_subject == 16
        finally:
            await admin.close()
        assert rt_shop.running
        assert rt_spy.running


async def test_a_star_rule_is_one_level_wider_at_the_broker(server: NatsServer) -> None:
    """The documented known limit (docs/security.md): NATS matches a literal ``>`` token
    with ``*``, so billing's rule ``orders.*`` lets its raw client create its own
    consumer with the filter ``orders.>``. If NATS ever refuses this, update the docs."""
    raw = await Attacker.connect(server, "billing")
    try:
        name = "billing__charge__replay"
        filt = f"{NS}.s.EVENTS.*.orders.>"
        resp = await raw.nc.request(
            f"$JS.API.CONSUMER.CREATE.{EVENTS}.{name}.{filt}", _create_body(name, filt), timeout=5
        )
        assert json.loads(resp.data)["config"]["filter_subject"] == filt
        await raw.nc.request(f"$JS.API.CONSUMER.DELETE.{EVENTS}.{name}", b"", timeout=5)
        assert raw.errors == []
    finally:
        await raw.close()


async def test_the_library_says_what_to_run_when_streams_are_missing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """No `setup` yet: a runtime may not create the streams and says how to."""
    from agentcomm.cli.main import main

    policy = Policy.from_toml(POLICY)
    log: dict[str, list[str]] = {"charge": [], "share": [], "watch": []}
    _, billing, _ = _agents(log)
    with NatsServer(tmp_path / "nats", config=_config()) as srv:
        with pytest.raises(ConfigurationError, match="agentcomm nats setup") as info:
            async with Runtime(
                transport=NatsTransport(_url(srv, "billing"), namespace=NS),
                agents=[billing],
                access=policy,
            ):
                pass
        assert f"'{EVENTS}' does not exist" in str(info.value)
        async with Runtime(
            transport=NatsTransport(_url(srv, "shop"), namespace=NS), access=policy
        ) as rt:
            with pytest.raises(ConfigurationError, match="agentcomm nats setup"):
                await rt.agent("shop").board.write("orders.o1", 1)
        # An agent's user cannot run the set-up either; the admin can, twice.
        base = ["nats", "setup", "--namespace", NS, "--nats"]
        assert await asyncio.to_thread(main, [*base, _url(srv, "shop")]) == 1
        assert await asyncio.to_thread(main, [*base, _url(srv, "admin")]) == 0
        assert (
            await asyncio.to_thread(main, [*base, _url(srv, "admin"), "--max-events", "500"]) == 0
        )
        async with Runtime(
            transport=NatsTransport(_url(srv, "shop"), namespace=NS), access=policy
        ) as rt:
            shop = rt.agent("shop")
            await shop.board.write("orders.o1", 1)
            # its runtime wants other retention: it may not change it, and goes on
            assert await shop.publish("orders.created", {"order": "o"}) == 1
        assert any(
            f"stream {EVENTS} differs" in r.getMessage() and "max_msgs" in r.getMessage()
            for r in caplog.records
        )
        admin = NatsTransport(_url(srv, "admin"), namespace=NS)
        await admin.start()
        try:
            si = await admin.client.jetstream().stream_info(EVENTS)
            assert si.config.max_msgs == 500  # as the admin set it
        finally:
            await admin.close()


async def test_setup_command_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from agentcomm.cli.main import main

    with NatsServer(tmp_path / "nats") as srv:
        ns = "s" + os.urandom(3).hex()
        args = ["nats", "setup", "--nats", srv.url, "--namespace", ns, "--bucket", "notes"]
        assert await asyncio.to_thread(main, args) == 0
        out = capsys.readouterr().out
        assert f"created stream {ns}_EVENTS" in out
        assert f"created bucket KV_{ns}_notes" in out
        assert await asyncio.to_thread(main, [*args, "--max-dead-letters", "7"]) == 0
        out = capsys.readouterr().out
        assert f"stream {ns}_EVENTS is up to date" in out
        assert f"updated stream {ns}_DLQ (max_msgs)" in out
        assert f"bucket KV_{ns}_notes exists (kept)" in out


async def test_runtime_refuses_a_subscription_the_policy_does_not_list() -> None:
    """In any transport: the policy lists billing's consumers, and 'refund' is not one."""
    policy = Policy.from_toml(POLICY, source="policy.toml")
    billing = Agent("billing")

    @billing.on("orders.*")
    async def refund(order: str) -> None: ...

    with pytest.raises(PermissionDenied) as info:
        async with Runtime(agents=[billing], access=policy):
            pass
    assert info.value.rule == "agents.billing.subscriptions"
    assert "'billing__refund'" in str(info.value)
    assert "subscriptions = ['charge']" in str(info.value)

    group = Agent("billing")

    @group.on("orders.*", group="payments")
    async def pay(order: str) -> None: ...

    with pytest.raises(PermissionDenied, match=r"groups = \['billing-workers'\]"):
        async with Runtime(agents=[group], access=policy):
            pass


def test_setup_creates_what_the_runtime_uses() -> None:
    """The admin's defaults are the runtime's, so a runtime finds nothing to update."""
    import inspect

    from agentcomm.blackboard.core import DEFAULT_HISTORY
    from agentcomm.observability.presence import BUCKET
    from agentcomm.transports.nats.admin import PRESENCE_BUCKET

    assert inspect.signature(NatsTransport.setup).parameters["history"].default == DEFAULT_HISTORY
    assert PRESENCE_BUCKET == BUCKET
