"""The Python example of the "Durable tasks" section of docs/streams-and-tasks.md runs."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "streams-and-tasks.md"


def test_durable_tasks_example_runs(tmp_path: Path) -> None:
    section = DOC.read_text().split("## Durable tasks", 1)[1]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert blocks
    path = tmp_path / "tasks_doc.py"
    path.write_text(blocks[0])
    proc = subprocess.run(
        [sys.executable, str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert "report on tea (attempt 1, paid sources: True)" in proc.stdout
    assert "input-required" in proc.stdout
