"""The A2A example programs run."""

from __future__ import annotations

from agentcomm.testing.extras import require_module

require_module("a2a")

from tests.examples import run_example  # noqa: E402


def test_the_concierge_serves_and_is_called_back() -> None:
    proc = run_example("a2a_concierge", timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("serving http://127.0.0.1:")
    assert lines[1:] == [
        "bonjour thé",
        "letter t",
        "letter e",
        "letter a",
        "We talked about: a taxi",
    ]
