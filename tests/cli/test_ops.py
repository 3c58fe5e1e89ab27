"""Operator CLI pieces that need no broker: tables, filters, parser wiring, presence on memory."""

from __future__ import annotations

import io
import sys

import pytest

from agentcomm import Agent, Runtime
from agentcomm.cli.main import build_parser
from agentcomm.cli.ops import _tail_match
from agentcomm.cli.output import _table
from agentcomm.testing.extras import require_module


def test_table_falls_back_to_plain_text_without_rich(monkeypatch: pytest.MonkeyPatch) -> None:
    for mod in ("rich", "rich.console", "rich.table"):
        monkeypatch.setitem(sys.modules, mod, None)  # import now fails
    out = io.StringIO()
    _table(out, "agents", ["agent", "handled"], [("calc", 3), ("billing-long-name", 12)])
    assert out.getvalue().splitlines() == [
        "agents",
        "agent              handled",
        "calc               3      ",
        "billing-long-name  12     ",
    ]


def test_table_with_rich_has_no_colour_off_a_terminal() -> None:
    require_module("rich")
    out = io.StringIO()
    _table(out, "agents", ["agent", "handled"], [("calc", 3)])
    assert "calc" in out.getvalue()
    assert "\x1b[" not in out.getvalue()


def test_tail_filter_matches_agents_and_topic_patterns() -> None:
    rec = {"sender": "me", "recipient": None, "topic": "orders.created"}
    assert _tail_match(rec, None)
    assert _tail_match(rec, "me")
    assert _tail_match(rec, "orders.*")
    assert _tail_match(rec, "orders.>")
    assert not _tail_match(rec, "billing")
    assert not _tail_match(rec, "invoices.*")
    assert _tail_match({"sender": "a", "recipient": "calc", "topic": None}, "calc")


def test_parser_defaults_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTCOMM_NATS", "nats://broker:4222")
    monkeypatch.setenv("AGENTCOMM_NAMESPACE", "prod")
    args = build_parser().parse_args(["stats", "--watch"])
    assert (args.nats, args.namespace, args.watch, args.json) == (
        "nats://broker:4222",
        "prod",
        True,
        False,
    )
    assert build_parser().parse_args(["dlq", "list"]).nats == "nats://broker:4222"  # real only
    assert build_parser().parse_args(["tools"]).nats is None
    run = build_parser().parse_args(["run", "app:agents"])  # `run` honours it too
    assert run.nats == "nats://broker:4222"


async def test_memory_runtime_has_no_presence() -> None:
    async with Runtime(agents=[Agent("solo")]) as rt:
        assert rt.existing_extension("presence") is None
