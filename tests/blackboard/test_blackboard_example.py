"""The ported ResearchAgent/AnalysisAgent example runs and does what it says."""

from __future__ import annotations

import io

from tests.examples import load_example, run_example


async def test_example_researcher_and_analyst_cooperate_on_the_board() -> None:
    example = load_example("blackboard_research")
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
    done = run_example("blackboard_research")
    assert done.returncode == 0, done.stderr
    assert "analysis.q1" in done.stdout
    assert "analysis.q2" in done.stdout
