"""A concierge agent served over A2A, and called back through an A2A proxy agent.

Run it: ``python examples/a2a_concierge.py``. Serve it to any A2A client:
``agentcomm a2a serve examples/a2a_concierge.py:concierge --default chat --http 127.0.0.1:8000``.

It has one skill of each kind: ``translate`` (a request: one answer), ``spell`` (a
stream: a letter at a time, with progress) and ``chat`` (a durable task that asks
the caller a question after each turn: A2A's input-required; say "bye" to end).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from agentcomm import Agent, Context, Runtime

# A chat waiting for its guest's reply holds one of the agent's task slots: allow many.
concierge = Agent(
    "concierge", description="A hotel concierge: translates, spells, chats.", concurrency=256
)

_WORDS = {"hello": "bonjour", "thanks": "merci", "tea": "thé", "goodbye": "au revoir"}


@concierge.handler
async def translate(text: str) -> str:
    """Translate a word or two into French (a small dictionary)."""
    return " ".join(_WORDS.get(w.lower(), w) for w in text.split())


@concierge.handler
async def spell(word: str, ctx: Context) -> AsyncIterator[str]:
    """Spell a word, one letter per chunk, with progress."""
    for i, letter in enumerate(word, 1):
        await ctx.progress(i, len(word), f"letter {i}")
        yield letter


@concierge.task_handler()
async def chat(text: str, ctx: Context) -> str:
    """Chat: answers each message and asks what else; reply "bye" to finish."""
    await ctx.progress(1, 1, "listening")
    topics = [text]
    reply = f"You said {text!r}."
    while True:
        said = await ctx.ask(
            f"{reply} Anything else? (say bye to finish)", returns=str, timeout=300
        )
        if said.strip().lower() in {"bye", "goodbye", "no", "done"}:
            return f"We talked about: {'; '.join(topics)}"
        topics.append(said)
        reply = f"Noted {said!r}."


async def main() -> None:
    async with Runtime(agents=[concierge]) as rt:
        exposure = await rt.a2a.expose("concierge", default="chat")
        print("serving", exposure.url)
        await rt.a2a.connect("front-desk", url=exposure.url)
        me = rt.agent("guest")
        print(await me.request("front-desk", "translate", {"text": "hello tea"}))
        async for letter in await me.stream("front-desk", "spell", {"word": "tea"}):
            print("letter", letter)
        handle = await me.start_task("front-desk", "chat", {"text": "a taxi"})
        async for update in handle.updates():
            if update.state == "input-required":
                await handle.answer("bye")
        print(await handle.result(timeout=30))


if __name__ == "__main__":
    asyncio.run(main())
