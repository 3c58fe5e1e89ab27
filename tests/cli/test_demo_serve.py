"""``agentcomm demo --nats URL --serve``: a running system to try the operator commands
on (issue 15), walked through as docs/operations.md does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from agentcomm.testing.nats_server import NatsServer

pytestmark = [pytest.mark.nats, pytest.mark.slow, pytest.mark.timeout(180)]


def _cli(*args: str) -> tuple[int, str, str]:
    p = subprocess.run(
        [sys.executable, "-m", "agentcomm", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "COLUMNS": "250"},
    )
    return p.returncode, p.stdout, p.stderr


def _until(check: object, seconds: float, what: str) -> None:
    end = time.monotonic() + seconds
    while not check():  # type: ignore[operator]
        assert time.monotonic() < end, f"never: {what}"
        time.sleep(0.3)


def test_the_demo_system_serves_the_operator_commands(nats_server: NatsServer) -> None:
    ns = "serve" + os.urandom(3).hex()
    opts = ["--nats", nats_server.url, "--namespace", ns]
    proc = subprocess.Popen(
        [sys.executable, "-m", "agentcomm", "demo", "--serve", "--seconds", "60", *opts],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith(f"agentcomm demo: serving on NATS at {nats_server.url}"), first

        def agents() -> dict[str, dict[str, object]]:
            code, out, _ = _cli("agents", *opts, "--json")
            return {r["agent"]: r for r in map(json.loads, out.splitlines())} if code == 0 else {}

        _until(lambda: agents().get("triage", {}).get("statistics", {}).get("handled"), 40,
               "triage handling tickets")  # fmt: skip
        names = set(agents())
        assert {"triage", "customer-data", "billing", "printer", "ledger", "kb-mcp"} <= names
        code, out, _ = _cli("tools", *opts)
        assert code == 0
        assert "kb-mcp" in out  # the MCP proxy's tool, listed like any agent's
        _until(lambda: "max_attempts" in _cli("dlq", "list", *opts)[1], 40, "a dead letter")
        code, out, _ = _cli("board", "get", "plan.step", *opts)
        assert code == 0
        assert '"status": "in progress"' in out
        code, out, _ = _cli("tail", "--count", "3", "--seconds", "20", *opts, "--json")
        assert code == 0
        assert len(out.splitlines()) == 3
        code, out, _ = _cli("stats", *opts, "--json")
        assert code == 0
        snap = json.loads(out)
        assert any(t["topic"] == "invoices.created" and t["stored"] > 0 for t in snap["topics"])
    finally:
        proc.terminate()  # Ctrl-C / SIGTERM ends it cleanly
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "agentcomm demo: stopping" in out
