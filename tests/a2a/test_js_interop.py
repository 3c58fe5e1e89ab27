"""Against a foreign implementation: the A2A JavaScript SDK (``@a2a-js/sdk``, npm).

The session fixture installs the SDK and express from the npm registry into
``.cache/npm-a2a`` (git-ignored). A small JS client (``js/client.mjs``) calls an
agentcomm exposure of the concierge example (card, send, stream with progress,
input-required round trip, cancel, an unknown task); a small JS server
(``js/server.mjs``) is consumed through ``rt.a2a.connect`` (send, stream, get,
cancel). Without node/npm the tests skip locally, and fail when ``CI=true``.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from agentcomm.testing.extras import missing, require_module

require_module("a2a")

from agentcomm import Runtime, UnknownTask  # noqa: E402
from tests.a2a.tck import free_port  # noqa: E402
from tests.examples import load_example  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache" / "npm-a2a"
PACKAGES = {"@a2a-js/sdk": "1.3.0", "express": "5.1.0"}
HERE = Path(__file__).resolve().parent / "js"

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def node() -> str:
    """node, with the packages installed once into the cache."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        missing("node and npm are needed for the A2A JavaScript interop tests")
        raise AssertionError("unreachable")
    installed = all(
        (CACHE / "node_modules" / name / "package.json").exists()
        and json.loads((CACHE / "node_modules" / name / "package.json").read_text())["version"]
        == version
        for name, version in PACKAGES.items()
    )
    if not installed:
        CACHE.mkdir(parents=True, exist_ok=True)
        (ROOT / ".cache" / ".gitignore").write_text("*\n")
        (CACHE / "package.json").write_text('{"private": true, "type": "module"}\n')
        specs = [f"{n}@{v}" for n, v in PACKAGES.items()]
        proc = subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", *specs],
            cwd=CACHE,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if proc.returncode != 0:
            missing(f"npm install {' '.join(specs)} failed: {proc.stderr[-500:]}")
    for script in ("client.mjs", "server.mjs"):  # next to node_modules, so imports resolve
        shutil.copy(HERE / script, CACHE / script)
    return node


async def test_a_js_client_calls_an_agentcomm_agent(node: str) -> None:
    concierge = load_example("a2a_concierge").concierge
    async with Runtime(agents=[concierge]) as rt:
        exposure = await rt.a2a.expose("concierge", default="chat")
        proc = await asyncio.create_subprocess_exec(
            node,
            "client.mjs",
            exposure.url,
            cwd=CACHE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()[-2000:]
    steps = {}
    for line in out.decode().splitlines():
        item = json.loads(line)
        steps[item["step"]] = item["value"]
    assert steps["card"] == {
        "name": "concierge",
        "skills": ["spell", "translate", "chat"],
        "streaming": True,
    }
    assert steps["send"] == "bonjour thé"
    assert steps["stream"]["letters"] == ["t", "e", "a"]
    assert steps["stream"]["progress"] >= 1
    assert steps["asked"] == {"state": "TASK_STATE_INPUT_REQUIRED"}
    assert steps["answered"] == {
        "state": "TASK_STATE_COMPLETED",
        "result": "We talked about: a taxi",
    }
    assert steps["canceled"] == {"state": "TASK_STATE_CANCELED"}
    assert steps["get"] == {"state": "TASK_STATE_CANCELED"}
    assert steps["missing"]["name"] == "JsonRpcTaskNotFoundError"


async def test_agentcomm_consumes_a_js_agent(node: str) -> None:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        node, "server.mjs", str(port), cwd=CACHE, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert line.decode().startswith("listening"), line
        url = f"http://127.0.0.1:{port}/"
        async with Runtime() as rt:
            conn = await rt.a2a.connect(
                "js", url=url, kinds={"countdown": "stream", "wait": "task"}
            )
            assert [(s.id, s.kind) for s in conn.skills] == [
                ("reverse", "request"),
                ("countdown", "stream"),
                ("wait", "task"),
            ]
            me = rt.agent("me")
            assert await me.request("js", "reverse", {"text": "abc"}) == "cba"
            stream = await me.stream("js", "countdown", {"n": 3})
            assert [c async for c in stream] == ["3", "2", "1"]
            handle = await me.start_task("js", "wait", {"text": "x"})
            await asyncio.sleep(0.3)
            assert (await handle.cancel()).state == "canceled"
            with pytest.raises(UnknownTask):
                await conn.get_task("no-such-task")
    finally:
        proc.terminate()
        await proc.wait()
