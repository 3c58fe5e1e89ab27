"""``agentcomm dlq list|show|redrive`` and the demo's pub/sub section."""

from __future__ import annotations

import io
import json

import pytest

from agentcomm.cli import main
from agentcomm.cli.demo import _pubsub_section


def test_dlq_list_show_redrive(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dlq", "list"]) == 0
    out = capsys.readouterr().out
    assert "printer__print_invoice" in out
    assert "ConnectionError: printer offline" in out
    assert "rejected" in out
    assert "expired" in out
    assert main(["dlq", "list", "--subscription", "ledger__book"]) == 0
    assert "printer" not in capsys.readouterr().out
    assert main(["dlq", "show", "2"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["reason"] == "rejected"
    assert shown["event"]["payload"]["invoice_id"] == "i-3"
    assert main(["dlq", "redrive", "3"]) == 0  # the printer is back online
    assert "handled" in capsys.readouterr().out
    assert main(["dlq", "redrive", "2"]) == 1  # still a negative amount
    assert main(["dlq", "show", "99"]) == 1
    assert main(["dlq", "show"]) == 2


async def test_demo_pubsub_section_narrates() -> None:
    out = io.StringIO()
    await _pubsub_section(out)
    text = out.getvalue()
    assert "Pub/sub events" in text
    assert "max_attempts after 3 attempt(s): ConnectionError: printer offline" in text
    assert "redrive #3: handled" in text
    assert "replayed 3 retained events to ledger only" in text
