"""The demo's long-running work section: a streamed answer, a cancelled stream, a
durable task that asks its caller and is followed again from a saved cursor.

See ``docs/streams-and-tasks.md``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TextIO

from agentcomm.api import Agent, Context, Runtime
from agentcomm.core.progress import Progress

__all__ = ["work_agents", "work_section"]


def work_agents(seen: dict[str, int]) -> list[Agent]:
    """A writer that streams and a researcher whose survey is a durable task."""
    writer = Agent("writer")

    @writer.handler
    async def draft(topic: str, ctx: Context) -> AsyncIterator[str]:
        "Draft a note on a topic, a sentence at a time."
        for i in range(3):
            await ctx.progress(i + 1, 3)
            yield f"{topic}: sentence {i + 1}."

    @writer.handler
    async def ramble(topic: str) -> AsyncIterator[str]:
        "Talk about a topic for ever (until the reader leaves)."
        try:
            n = 0
            while True:
                n += 1
                seen["rambled"] = n
                yield f"{topic} #{n}"
        except asyncio.CancelledError:
            seen["cancelled"] = 1
            raise

    researcher = Agent("researcher")

    @researcher.task_handler(on_lost="retry", max_attempts=3)
    async def survey(topic: str, ctx: Context) -> str:
        "Survey sources on a topic; asks whether paid sources may be used."
        for page in range(3):
            await ctx.progress(page + 1, 3, f"page {page + 1}")
        paid = await ctx.ask(f"Include paid sources on {topic}?", returns=bool, timeout=60)
        return f"report on {topic} ({'with' if paid else 'without'} paid sources)"

    return [writer, researcher]


async def work_section(out: TextIO) -> None:
    """Run the section, narrating to ``out``."""
    w = out.write
    w("\n6. Long-running work (streams, progress, cancellation, durable tasks)\n")
    seen: dict[str, int] = {}
    async with Runtime(agents=work_agents(seen)) as rt:
        client = rt.agent("client")
        reports: list[Progress] = []
        stream = await client.stream(
            "writer", "draft", {"topic": "tea"}, returns=str, on_progress=reports.append
        )
        async for part in stream:
            w(f"  streamed: {part}\n")
        w(f"  {len(reports)} progress reports, the last {reports[-1].fraction:.0%}\n")

        async for part in await client.stream("writer", "ramble", {"topic": "tea"}, window=8):
            if part.endswith("#5"):
                break  # leaving the loop cancels the producer
        await asyncio.sleep(0.05)
        w(
            f"  left a stream after 5 chunks: the producer was cancelled "
            f"({bool(seen.get('cancelled'))}) after {seen['rambled']} chunks (window 8)\n"
        )

        handle = await client.start_task("researcher", "survey", {"topic": "tea"}, returns=str)
        cursor = 0
        async for update in handle.updates():
            cursor = update.cursor
            if update.state == "input-required":
                question = (await handle.status()).question
                w(f"  task {handle.id[:8]} asks: {question.text if question else '?'}\n")
                break  # the caller goes away with its cursor...
        # ...and comes back later (another process could: caller.task(task_id)).
        again = client.task(handle.id, returns=str)
        await again.answer(True)
        kinds = [u.kind async for u in again.updates(since=cursor)]
        w(f"  re-attached from cursor {cursor}: then {', '.join(kinds)}\n")
        w(f"  result: {await again.result(timeout=10)}\n")
