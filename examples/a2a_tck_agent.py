"""The agent the A2A compatibility kit (TCK) is run against: ``tests/a2a/test_tck.py``.

``agentcomm a2a serve examples/a2a_tck_agent.py:agent --send-wait 0.3``

What the TCK expects of a system under test shapes it: a message starts a task
that keeps *working* for a while (the kit polls for the working state and lists
working tasks), takes follow-up messages (each answers the task's next question:
``ctx.ask``), and stays active for seconds (resubscription is tested on it). So
``converse`` thinks for ``THINK`` seconds, reporting progress, then asks; "bye"
ends it. ``echo`` (a request) and ``count`` (a stream) are its other skills.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from agentcomm import Agent, Context

#: Seconds each turn of ``converse`` works before it asks for the next message.
THINK = 1.5

agent = Agent("tck-agent", description="A conversational agent for the A2A TCK.", concurrency=512)


@agent.task_handler()
async def converse(
    text: str,
    ctx: Context,
    data: dict[str, Any] | None = None,
    files: list[dict[str, Any]] | None = None,
) -> str:
    """Answers each message after thinking a moment; reply "bye" to finish.

    A data part's object arrives as ``data``, file parts (bytes or URLs) as ``files``.
    """
    heard = [
        text
        + (f" (+data {sorted(data)})" if data else "")
        + (f" (+{len(files)} files)" if files else "")
    ]
    while True:
        for step in range(1, 4):
            await ctx.progress(step, 3, "thinking")
            await asyncio.sleep(THINK / 3)
        said = await ctx.ask(f"Heard {heard[-1]!r}. Anything else?", returns=str, timeout=120)
        if said.strip().lower() == "bye":
            return f"Heard {len(heard)} messages: {' | '.join(heard)}"
        heard.append(said)


@agent.handler
async def echo(text: str) -> str:
    """Echo the text back."""
    return text


@agent.handler
async def count(n: int, ctx: Context) -> AsyncIterator[int]:
    """Count from 1 to n, one chunk each, with progress."""
    for i in range(1, n + 1):
        await ctx.progress(i, n)
        yield i
