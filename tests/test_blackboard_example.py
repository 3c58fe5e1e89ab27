"""The ported ResearchAgent/AnalysisAgent example runs and does what it says."""

from __future__ import annotations

import importlib.util
import io
import subprocess
import sys
from pathlib import Path
from types import ModuleType

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "blackboard_research.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("blackboard_research", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # msgspec resolves the Structs' annotations here
    spec.loader.exec_module(module)
    return module


async def test_example_researcher_and_analyst_cooperate_on_the_board() -> None:
    example = _load()
    out = io.StringIO()
    analyses = await example.run(out, {"x": "agents", "y": "boards", "z": "nats"})
    assert sorted(analyses) == ["x", "y", "z"]
    for request_id, analysis in analyses.items():
        assert analysis.analysis == "Analysis of 1 findings complete"
        assert analysis.source == f"research_results.{request_id}"
    text = out.getvalue()
    assert "research_request.x" in text
    assert "by researcher" in text
    assert "by analyst" in text
    assert "0 callback failures" in text


def test_example_runs_as_a_program() -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLE)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "analysis.q1" in done.stdout
    assert "analysis.q2" in done.stdout
