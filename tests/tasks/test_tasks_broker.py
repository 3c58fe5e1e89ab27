"""Durable tasks under the generated broker authorization (docs/security.md, "Tasks").

nats-server runs with the config made from a policy; the admin creates the streams
and buckets (``agentcomm nats setup``, which includes the task store's); then a caller
and a worker, each as its own NATS user, run a task end to end (progress, a question
answered, a result, a cancel), while an agent the policy does not let send to the
worker is refused, by its runtime and, with plain nats-py, by the broker itself.
"""

from __future__ import annotations

import argparse
import asyncio
import io
from collections.abc import Iterator

import pytest

from agentcomm import Agent, Context, PermissionDenied, Runtime, TaskCancelled
from agentcomm.core.names import nats_inbox_prefix
from agentcomm.security.policy import Policy
from agentcomm.testing.extras import require_module
from agentcomm.testing.nats_server import NatsServer

require_module("nats")

import nats  # noqa: E402

from agentcomm.cli.ops_setup import cmd_setup  # noqa: E402
from agentcomm.transports.nats.transport import NatsTransport  # noqa: E402

pytestmark = pytest.mark.nats

NS = "tp"
POLICY = """
[agents.boss]
send = ["writer"]

[agents.writer]

[agents.spy]
send = ["archive"]
"""
PASSWORDS = {"boss": "pw-boss", "writer": "pw-writer", "spy": "pw-spy", "admin": "pw-admin"}


def _url(server: NatsServer, user: str) -> str:
    return f"nats://{user}:{PASSWORDS[user]}@127.0.0.1:{server.port}"


def _writer() -> Agent:
    writer = Agent("writer")

    @writer.task_handler()
    async def draft(topic: str, ctx: Context) -> str:
        await ctx.progress(1, 2, "outline")
        ok = await ctx.ask(f"publish {topic}?", returns=bool, timeout=20)
        await ctx.progress(2, 2, "written")
        return f"{topic}: {'published' if ok else 'kept'}"

    @writer.task_handler()
    async def endless(ctx: Context) -> None:
        await asyncio.Event().wait()

    return writer


def _runtime(server: NatsServer, user: str, agents: list[Agent] | None = None) -> Runtime:
    policy = Policy.from_toml(POLICY)
    transport = NatsTransport(_url(server, user), namespace=NS)
    return Runtime(transport=transport, agents=agents or [], access=policy)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    policy = Policy.from_toml(POLICY)
    config = policy.nats_config(
        namespace=NS, passwords=PASSWORDS, admin="admin", agents=[_writer()]
    )
    with NatsServer(tmp_path_factory.mktemp("nats-tasks"), config=config) as srv:

        async def setup() -> str:
            admin = NatsTransport(_url(srv, "admin"), namespace=NS)
            await admin.start()
            try:
                out = io.StringIO()
                args = argparse.Namespace(
                    max_events=None,
                    max_bytes=None,
                    max_age=None,
                    max_dead_letters=None,
                    bucket=None,
                    history=16,
                    replicas=1,
                    json=False,
                )
                assert await cmd_setup(admin, args, out) == 0
                return out.getvalue()
            finally:
                await admin.close()

        lines = asyncio.run(setup()).splitlines()
        assert f"created stream {NS}_TASKS" in lines
        assert f"created stream {NS}_TASK_UPDATES" in lines
        assert f"created bucket KV_{NS}_tasks" in lines
        yield srv


async def test_a_task_runs_end_to_end_as_the_policy_allows(server: NatsServer) -> None:
    async with _runtime(server, "writer", [_writer()]), _runtime(server, "boss") as boss_rt:
        boss = boss_rt.agent("boss")
        handle = await boss.start_task("writer", "draft", {"topic": "q3"}, returns=str)
        for _ in range(400):
            status = await handle.status()
            if status.state == "input-required":
                break
            await asyncio.sleep(0.05)
        assert status.state == "input-required"
        assert status.question is not None
        assert status.question.text == "publish q3?"
        await handle.answer(True)
        assert await handle.result(timeout=20) == "q3: published"
        kinds = [u.kind for u in [u async for u in handle.updates()]]
        assert kinds.count("progress") == 2
        # a cancel crosses too: the worker's handler is stopped, the state is final
        endless = await boss.start_task("writer", "endless")
        for _ in range(400):
            if (await endless.status()).state == "working":
                break
            await asyncio.sleep(0.05)
        await endless.cancel()
        with pytest.raises(TaskCancelled):
            await endless.result(timeout=20)


async def test_an_agent_the_policy_does_not_allow_is_refused_twice(server: NatsServer) -> None:
    async with _runtime(server, "spy") as spy_rt:
        with pytest.raises(PermissionDenied):
            await spy_rt.agent("spy").start_task("writer", "draft", {"topic": "x"})
    # Past the library, the broker refuses the spy's user to queue the writer's work
    # or to pull the writer's work consumer.
    errors: list[str] = []

    async def on_error(exc: Exception) -> None:
        errors.append(str(exc).lower())

    nc = await nats.connect(
        server.url,
        user="spy",
        password=PASSWORDS["spy"],
        inbox_prefix=nats_inbox_prefix("spy", namespace=NS),
        error_cb=on_error,
        allow_reconnect=False,
    )
    try:
        await nc.publish(f"{NS}.s.TASKS.tasks.work.writer", b"{}")
        await nc.publish(f"$JS.API.CONSUMER.MSG.NEXT.{NS}_TASKS.tasks__writer", b"1")
        await nc.flush()
        for _ in range(100):
            if len(errors) >= 2:
                break
            await asyncio.sleep(0.02)
    finally:
        await nc.close()
    assert any("tasks.work.writer" in e for e in errors), errors
    assert any("tasks__writer" in e for e in errors), errors
