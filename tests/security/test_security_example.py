"""examples/security.py runs and shows each refusal."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.examples import run_example

ROOT = Path(__file__).resolve().parents[2]


def test_security_example_runs() -> None:
    proc = run_example("security")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "signed request answered: 2 results" in out
    assert "refused: rule agents.planner.write" in out
    assert "refused: max_payload" in out
    assert "tampered request refused: AuthenticationError" in out
    assert "replayed request refused: ReplayDetected" in out
    assert "injected text inside the data block: True" in out
    assert "signatures: 4 made, 2 verified, 2 refused" in out


def test_docs_policy_block_loads_and_behaves_as_described() -> None:
    import re

    from agentcomm.core.errors import PermissionDenied
    from agentcomm.security.policy import Policy

    text = (ROOT / "docs" / "security.md").read_text()
    block = re.search(r"```toml\n(.*?)```", text, re.S)
    assert block is not None
    policy = Policy.from_toml(block.group(1), source="policy.toml")
    assert policy.allows("planner", "send", "researcher.search")
    assert policy.allows("researcher", "subscribe", "status.up")  # from [defaults]
    assert policy.allows("runtime", "write", "anything")  # trusted
    policy.check_consumer("researcher", "follow")  # durable researcher__follow
    policy.check_consumer("researcher", "x", group="indexers")
    with pytest.raises(PermissionDenied):
        policy.check_consumer("researcher", "other")
    with pytest.raises(PermissionDenied) as info:
        policy("planner", "send", "calc.sub")
    shown = " ".join(str(info.value).split())
    documented = re.search(r"PermissionDenied: (policy policy\.toml:.*?allowed)", text, re.S)
    assert documented is not None
    assert shown == " ".join(documented.group(1).split())
