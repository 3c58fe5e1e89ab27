"""The direct-messaging example and the demo run as programs."""

from __future__ import annotations

from pathlib import Path

from tests.examples import run_example

ROOT = Path(__file__).resolve().parents[2]


def test_direct_messages_example_runs() -> None:
    proc = run_example("direct_messages")
    assert proc.returncode == 0, proc.stderr
    assert "support got Ada Lovelace (gold)" in proc.stdout
    assert "64 concurrent answers" in proc.stdout
    assert "fail fast: no agent named 'billing'" in proc.stdout
    assert "deadline: customer-data.lookup did not answer" in proc.stdout
    assert "audit saw: ['looked up c-42']" in proc.stdout
