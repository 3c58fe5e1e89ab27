"""Every command ends in one clear line for an expected failure (issue 15): exit 1, no
traceback; flags are honoured or refused, never ignored."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agentcomm.testing.nats_server import NatsServer

pytestmark = pytest.mark.timeout(120)


def _run(*args: str, cwd: Path | None = None) -> tuple[int, str, str]:
    proc = subprocess.run(
        [sys.executable, "-m", "agentcomm", *args],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=cwd,
        check=False,
    )
    return proc.returncode, proc.stdout, proc.stderr


def _one_line(err: str) -> str:
    assert "Traceback" not in err, err
    text = err.strip()
    assert "\n" not in text, err
    return text


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["run", "nosuchmodule:agents", "--nats", "nats://127.0.0.1:1"], "cannot import"),
        (["tools", "nosuchmodule:agents"], "cannot import"),
        (["mcp", "serve", "nosuchmodule:agents"], "cannot import"),
        (["agents", "--nats", "garbage"], "invalid NATS URL 'garbage'"),
        (["demo", "--nats", "nats://127.0.0.1:1"], "could not connect to NATS"),
        (["dlq", "list", "--nats", "nats://127.0.0.1:1"], "cannot reach NATS"),
    ],
)
def test_expected_failures_end_in_one_line(args: list[str], says: str, tmp_path: Path) -> None:
    code, _, err = _run(*args, cwd=tmp_path)
    assert code == 1
    assert says in _one_line(err)


def test_output_piped_into_head_ends_quietly() -> None:
    proc = subprocess.run(
        f"{sys.executable} -m agentcomm demo | head -n 2",
        shell=True,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert proc.stdout.startswith("agentcomm demo")
    assert "Traceback" not in proc.stderr
    assert "BrokenPipe" not in proc.stderr


def test_keys_generate_names_its_own_flag(tmp_path: Path) -> None:
    assert _run("keys", "generate", "zed", "--out", str(tmp_path))[0] == 0
    code, _, err = _run("keys", "generate", "zed", "--out", str(tmp_path))
    assert code == 1
    assert "pass --force" in _one_line(err)
    assert "overwrite=True" not in err


@pytest.mark.nats
@pytest.mark.parametrize("bad", ["orders..x", "or*ders"])
def test_tail_refuses_a_pattern_that_can_never_match(nats_server: NatsServer, bad: str) -> None:
    code, out, err = _run("tail", bad, "--nats", nats_server.url, "--seconds", "0.5")
    assert code == 1
    assert out == ""
    assert "neither an agent name nor a topic pattern" in _one_line(err)


@pytest.mark.nats
def test_tail_warns_about_a_name_no_agent_announces(nats_server: NatsServer) -> None:
    code, _, err = _run("tail", "nobody", "--nats", nats_server.url, "--seconds", "0.3")
    assert code == 0
    assert "no agent named 'nobody' announces itself" in err


@pytest.mark.nats
def test_unknown_namespaces_say_so(nats_server: NatsServer) -> None:
    code, out, _ = _run(
        "tools", "--nats", nats_server.url, "--namespace", "nobody-here", "--llm", "anthropic"
    )
    assert out == ""
    assert code == 1  # nothing there: said, not an empty table
    code, out, err = _run("agents", "--nats", nats_server.url, "--namespace", "nobody-here")
    assert code == 1
    assert "no agents announce themselves in namespace 'nobody-here'" in _one_line(err)
    code, out, err = _run("stats", "--nats", nats_server.url, "--namespace", "nobody-here")
    assert code == 1
    assert "nothing runs in namespace 'nobody-here'" in _one_line(err)
