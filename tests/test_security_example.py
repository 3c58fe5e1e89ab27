"""examples/security.py runs and shows each refusal."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_security_example_runs() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "security.py")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "signed request answered: 2 results" in out
    assert "refused: rule agents.planner.write" in out
    assert "refused: max_payload" in out
    assert "tampered request refused: AuthenticationError" in out
    assert "replayed request refused: ReplayDetected" in out
    assert "injected text inside the data block: True" in out
    assert "signatures: 4 made, 2 verified, 2 refused" in out
