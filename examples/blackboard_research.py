"""A research agent and an analysis agent sharing a blackboard, on agentcomm.

A ``researcher`` reacts to research requests written on the board and writes its
findings back; an ``analyst`` reacts to findings and writes an analysis. What
changed from a naive dict-and-callbacks blackboard:

* keys follow one rule: ``research_request.<id>``, ``research_results.<id>``,
  ``analysis.<id>`` (dot-separated tokens; a prefix watch selects whole tokens, so
  ``research_request.`` never matches ``research_requests_archive``);
* values are typed (msgspec Structs) and validated on read; every entry records
  its author and revision, and the board keeps a bounded history per key;
* callbacks run in tasks the runtime owns, one at a time and in order per
  subscription; a failing callback is logged and counted, not lost;
* the analyst writes with ``create()``, so a repeated notification cannot
  overwrite an analysis (no chaos when several analysts watch the same keys).

Run: ``python examples/blackboard_research.py``
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any, TextIO

import msgspec

from agentcomm import Agent, KeyExists, Runtime
from agentcomm.blackboard import Change


class ResearchRequest(msgspec.Struct, frozen=True):
    """What a requester asks for."""

    query: str


class Finding(msgspec.Struct, frozen=True):
    """One search result."""

    title: str
    relevance: float


class Findings(msgspec.Struct, frozen=True):
    """What the researcher writes back."""

    query: str
    findings: list[Finding]


class Analysis(msgspec.Struct, frozen=True):
    """What the analyst concludes."""

    analysis: str
    source: str


class ResearchAgent:
    """Reacts when a new research request appears on the board."""

    def __init__(self) -> None:
        self.agent = Agent("researcher")

    async def start(self) -> None:
        await self.agent.board.subscribe(
            "research_request.", self.on_research_request, type=ResearchRequest
        )

    async def on_research_request(self, change: Change[ResearchRequest]) -> None:
        if change.entry is None:  # the request was deleted or expired
            return
        query = change.entry.value.query
        results = await self._search(query)
        request_id = change.key.removeprefix("research_request.")
        await self.agent.board.write(
            f"research_results.{request_id}", Findings(query=query, findings=results)
        )

    async def _search(self, query: str) -> list[Finding]:
        return [Finding(title=f"Result for {query}", relevance=0.95)]


class AnalysisAgent:
    """Reacts when research results appear on the board."""

    def __init__(self) -> None:
        self.agent = Agent("analyst")

    async def start(self) -> None:
        await self.agent.board.subscribe(
            "research_results.", self.on_results_available, type=Findings
        )

    async def on_results_available(self, change: Change[Findings]) -> None:
        if change.entry is None:
            return
        analysis = await self._analyze(change.entry.value.findings)
        request_id = change.key.removeprefix("research_results.")
        try:
            await self.agent.board.create(
                f"analysis.{request_id}", Analysis(analysis=analysis, source=change.key)
            )
        except KeyExists:
            pass  # already analysed: the first analysis stands

    async def _analyze(self, findings: list[Finding]) -> str:
        return f"Analysis of {len(findings)} findings complete"


async def run(out: TextIO, queries: dict[str, str] | None = None) -> dict[str, Any]:
    """Post research requests and wait for every analysis; returns them by request id.

    Example::

        analyses = asyncio.run(run(sys.stdout))
    """
    queries = queries or {"q1": "multi-agent communication", "q2": "blackboard systems"}
    researcher, analyst = ResearchAgent(), AnalysisAgent()
    analyses: dict[str, Any] = {}
    async with Runtime(agents=[researcher.agent, analyst.agent]) as rt:
        await researcher.start()
        await analyst.start()
        board = rt.board
        async with board.watch("analysis.", snapshot=False, type=Analysis) as done:
            for request_id, query in queries.items():
                await board.as_author("requester").write(
                    f"research_request.{request_id}", ResearchRequest(query=query)
                )
            async with asyncio.timeout(10):
                async for change in done:
                    assert change.entry is not None
                    analyses[change.key.removeprefix("analysis.")] = change.entry.value
                    out.write(
                        f"{change.key} (revision {change.revision}, by {change.entry.author}): "
                        f"{change.entry.value.analysis}\n"
                    )
                    if len(analyses) == len(queries):
                        break
        out.write("\nthe board now holds:\n")
        for key, entry in (await board.read_prefix("")).items():
            out.write(f"  {key:<28} r{entry.revision:<3} by {entry.author}\n")
        stats = board.statistics()
        out.write(
            f"\n{stats.writes} writes, {stats.callbacks} callbacks, "
            f"{stats.callback_failures} callback failures\n"
        )
    return analyses


def main() -> int:
    """Run the example, printing to stdout."""
    asyncio.run(run(sys.stdout))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
