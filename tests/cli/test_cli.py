"""The command line, run as a user would."""

from __future__ import annotations

import subprocess
import sys

from agentcomm.cli import main


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agentcomm", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_demo_runs_and_narrates() -> None:
    proc = _run("demo")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "Direct messages" in out
    assert "route 'priority'" in out
    assert "NoResponders at once" in out
    assert "ValidationError, handler never ran" in out
    assert "RemoteError: customer-data raised KeyError" in out
    assert "RequestTimeout: billing.slow_report did not answer within 0.2s" in out
    # Long-running work: streamed, cancelled, and a task resumed from its cursor.
    assert "streamed: tea: sentence 3." in out
    assert "the producer was cancelled (True)" in out
    assert "asks: Include paid sources on tea?" in out
    assert "result: report on tea (with paid sources)" in out


def test_help_lists_commands() -> None:
    proc = _run("--help")
    assert proc.returncode == 0
    assert "demo" in proc.stdout


def test_no_command_prints_help_and_fails(capsys: object) -> None:
    assert main([]) == 2


def test_version() -> None:
    proc = _run("version")
    assert proc.returncode == 0
    assert proc.stdout.startswith("agentcomm ")


def test_demo_trace_prints_the_tree_of_one_request() -> None:
    proc = _run("demo", "--trace")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    start = lines.index("  trace of that request (OpenTelemetry spans, durations):")
    tree = [ln.strip().rsplit("  ", 1)[0] for ln in lines[start + 1 : start + 9]]
    assert tree == [
        "request triage",
        "process triage",
        "request customer-data",
        "process customer-data",
        "request billing",
        "process billing",
        "send notifier",
        "process notifier",
    ]
