"""The Python examples of docs/pubsub.md run as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "pubsub.md"


def test_docs_python_examples_run(tmp_path: Path) -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    assert blocks
    for i, code in enumerate(blocks):
        path = tmp_path / f"pubsub_doc_{i}.py"
        path.write_text(code)
        proc = subprocess.run(
            [sys.executable, str(path)], capture_output=True, text=True, timeout=60, check=False
        )
        assert proc.returncode == 0, f"block {i} failed:\n{proc.stderr}"
        assert "orders.created #1: o-1" in proc.stdout
