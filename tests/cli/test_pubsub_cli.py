"""``agentcomm dlq list|show|redrive`` and the demo's pub/sub section."""

from __future__ import annotations

import io

import pytest

from agentcomm.cli import main
from agentcomm.cli.demo import _pubsub_section


def test_dlq_works_on_a_real_system_only(capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 15: without --nats it re-ran the demo at every call, so a redrive
    "succeeded" and the next list still showed the letter. It needs a system now
    (--nats or $AGENTCOMM_NATS; tests/cli/test_ops_nats.py runs it on one), and says
    in one line when there is none."""
    assert main(["dlq", "list", "--nats", "nats://127.0.0.1:1"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "cannot reach NATS at nats://127.0.0.1:1" in err


async def test_demo_pubsub_section_narrates() -> None:
    out = io.StringIO()
    await _pubsub_section(out)
    text = out.getvalue()
    assert "Pub/sub events" in text
    assert "max_attempts after 3 attempt(s): ConnectionError: printer offline" in text
    assert "redrive #3: handled" in text
    assert "replayed 3 retained events to ledger only" in text
