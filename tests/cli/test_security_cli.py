"""The command line: keys generate, policy check, policy nats-config."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentcomm.cli.main import main
from agentcomm.security.keyring import Keyring
from agentcomm.security.policy import Policy
from agentcomm.security.signing import Identity


def test_keys_generate_writes_files_and_never_prints_the_private_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["keys", "generate", "alice", "bob", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    alice = Identity.from_file("alice", tmp_path / "alice.key")
    assert alice.public_key_b64() in out
    assert "PRIVATE KEY" not in out
    assert "".join(alice.private_pem().decode().splitlines()[1:-1]) not in out
    assert Keyring.from_directory(tmp_path).names() == ["alice", "bob"]
    assert main(["keys", "generate", "alice", "--out", str(tmp_path)]) == 1
    assert "exists" in capsys.readouterr().err
    assert main(["keys", "generate", "bad name", "--out", str(tmp_path)]) == 1


def test_policy_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "p.toml"
    good.write_text('[agents.a]\nsend = ["b"]\n[agents.b]\nsend = ["a.x"]\n')
    assert main(["policy", "check", str(good)]) == 0
    assert "2 agents, 0 trusted, 0 warnings" in capsys.readouterr().out
    bad = tmp_path / "bad.toml"
    bad.write_text('[agents.a]\nsned = ["b"]\n')
    assert main(["policy", "check", str(bad)]) == 1
    assert "unknown actions ['sned']" in capsys.readouterr().err


def test_policy_nats_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "p.toml"
    src.write_text('[agents.a]\nsend = ["b"]\nwrite = ["x."]\n[agents.b]\n')
    assert main(["policy", "nats-config", str(src), "--namespace", "prod"]) == 0
    out = capsys.readouterr().out
    # The CLI adds the admin user by default (it creates the streams: `nats setup`).
    assert out == Policy.from_file(src).nats_config(namespace="prod", admin="admin")
    assert 'user: "admin"' in out
    assert '"prod.a.b.*"' in out
    target = tmp_path / "auth.conf"
    args = ["policy", "nats-config", str(src), "--bucket", "notes", "-o", str(target)]
    assert main(args) == 0
    assert "$KV.agentcomm_notes.x.>" in target.read_text()


AGENTS_PY = """
from agentcomm import Agent

billing = Agent("billing")


@billing.on("orders.*")
async def charge(order: str) -> None: ...


@billing.on("orders.*", group="billing-workers", name="share")
async def share(order: str) -> None: ...
"""


def test_policy_commands_take_consumer_names_from_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "p.toml"
    src.write_text('[agents.billing]\nsubscribe = ["orders.*"]\n')
    code = tmp_path / "agents.py"
    code.write_text(AGENTS_PY)
    # Without the code: no consumer names, so no consumer use, and a warning that says so.
    assert main(["policy", "nats-config", str(src), "--admin", ""]) == 0
    captured = capsys.readouterr()
    assert "agentcomm_EVENTS." not in captured.out  # no pub/sub consumer (tasks have theirs)
    assert 'user: "admin"' not in captured.out
    assert "no consumer names" in captured.err
    assert "subscriptions = [...]" in captured.err
    # With it: the declared durables, bound to their exact filters.
    target = f"{code}:billing"
    assert main(["policy", "nats-config", str(src), "--agents", target]) == 0
    captured = capsys.readouterr()
    out = captured.out
    assert "no consumer names" not in captured.err
    assert "$JS.API.CONSUMER.MSG.NEXT.agentcomm_EVENTS.billing__charge" in out
    assert "$JS.API.CONSUMER.MSG.NEXT.agentcomm_EVENTS.billing-workers" in out
    assert "$JS.ACK.agentcomm_EVENTS.billing__charge.>" in out
    assert (
        "$JS.API.CONSUMER.CREATE.agentcomm_EVENTS.billing__charge.agentcomm.s.EVENTS.*.orders.*"
        in out
    )
    assert "ends in '*'" in captured.err  # the broker's known limit, said out loud
    assert main(["policy", "check", str(src), "--agents", target]) == 0
    assert "no consumer names" not in capsys.readouterr().out
