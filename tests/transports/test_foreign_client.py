"""A client in another language joins from the wire format alone (issue 17, item 6).

``node_peer.mjs`` uses the npm ``nats`` client and only what docs/wire-format.md says:
it publishes an event that an agentcomm subscriber handles, calls an agent and
decodes the response, updates a blackboard entry with compare-and-set (a stale
revision refused), and verifies the Ed25519 signature of a request an agentcomm agent
sends it. Without node/npm the test skips locally and fails under ``CI=true``.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from agentcomm import Agent, Identity, Keyring, Runtime, Security
from agentcomm.pubsub.partitions import partition_of
from agentcomm.testing.extras import require_module
from agentcomm.testing.nats_server import NatsServer
from agentcomm.testing.npm import CACHE, node_binary, npm_package

require_module("nats")

from agentcomm.transports.nats import NatsTransport  # noqa: E402

pytestmark = pytest.mark.nats

PEER = Path(__file__).with_name("node_peer.mjs")
NATS_JS = "2.29.3"


async def _lines(proc: asyncio.subprocess.Process, until: str) -> list[dict[str, Any]]:
    """The peer's JSON lines up to (and with) the step ``until``."""
    assert proc.stdout is not None
    out: list[dict[str, Any]] = []
    while True:
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        if not line:
            raise AssertionError(f"the node peer exited before {until!r}: {out}")
        out.append(json.loads(line))
        if out[-1]["step"] == until:
            return out


@pytest.mark.timeout(300)  # the first run includes the npm install
async def test_a_node_client_speaks_the_wire_format(nats_server: NatsServer) -> None:
    npm_package("nats", NATS_JS)
    script = CACHE / PEER.name  # beside node_modules, so `import "nats"` resolves
    shutil.copyfile(PEER, script)
    ns = "js" + os.urandom(4).hex()
    events: list[dict[str, Any]] = []
    calc, auditor = Agent("calc"), Agent("auditor")

    @calc.handler
    async def add(a: int, b: int) -> int:
        return a + b

    @auditor.on("orders.*")
    async def audit(order: str, total: int) -> None:
        events.append({"order": order, "total": total})

    py, node = Identity.generate("py"), Identity.generate("node")
    pub = py.public_key_b64()
    trusted = Keyring({"node": node.public_key_b64()})  # the peer's key, not its secret
    async with (
        Runtime(
            transport=NatsTransport(nats_server.url, namespace=ns), agents=[calc, auditor]
        ) as rt,
        Runtime(
            transport=NatsTransport(nats_server.url, namespace=ns),
            security=Security(identities=[py], keys=trusted),
        ) as signed_rt,
    ):
        await rt.board.write("shared.count", 1)
        proc = await asyncio.create_subprocess_exec(
            node_binary(), str(script), nats_server.url, ns, pub,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert proc.stdin is not None
        proc.stdin.write(node.private_pem())
        proc.stdin.close()
        try:
            got = {line["step"]: line for line in await _lines(proc, "ready")}
            answer = await signed_rt.agent("py").request("node", "check", {"n": 1}, timeout=10)
            got.update({line["step"]: line for line in await _lines(proc, "signed")})
            await asyncio.wait_for(proc.wait(), 10)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        for _ in range(200):
            if events:
                break
            await asyncio.sleep(0.05)
        entry = await rt.board.read("shared.count")
    assert got["event"]["seq"] >= 1
    # the Node program's CRC-32 partition of key "o-17" is ours
    assert got["event"]["subject"].endswith(f".s.EVENTS.{partition_of('o-17')}.orders.created")
    assert events == [{"order": "o-17", "total": 42}]
    assert got["request"] == {
        "step": "request",
        "kind": "response",
        "correlation": True,
        "payload": 5,
        "error": None,
    }
    assert got["board"]["read"] == 1
    assert got["board"]["staleRefused"] is True
    assert entry is not None
    assert entry.value == 2
    assert entry.author == "node"
    assert entry.revision == got["board"]["revision"]
    assert answer == {"valid": True, "tamperDetected": True}
    assert got["signed"]["handler"] == "check"
