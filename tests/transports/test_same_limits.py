"""The same payload limit on every transport (issue 15): memory accepted a 64 MiB
request while NATS refused anything over 1 MiB (a TransportError). Both now refuse
it with LimitExceeded at the sender, and an answer too large is a limit error, not a
timeout."""

from __future__ import annotations

import pytest

from agentcomm import Agent, LimitExceeded, RemoteError, Runtime, ValidationError
from agentcomm.testing.fixtures import MakeRuntime

BIG = "x" * (1_100_000)


def _echo() -> Agent:
    a = Agent("echo")

    @a.handler
    async def back(text: str) -> str:
        return text

    @a.handler
    async def grow(n: int) -> str:
        return "y" * n

    return a


async def test_a_payload_over_one_mib_is_refused_on_every_transport(
    make_runtime: MakeRuntime,
) -> None:
    async with make_runtime(agents=[_echo()]) as rt:
        me = rt.agent("me")
        assert await me.request("echo", "back", {"text": "small"}) == "small"
        with pytest.raises(LimitExceeded, match="max_payload"):
            await me.request("echo", "back", {"text": BIG})
        with pytest.raises(LimitExceeded, match="max_payload"):
            await me.send("echo", "back", {"text": BIG})
        with pytest.raises(LimitExceeded, match="max_payload"):
            await me.publish("big.news", {"text": BIG})
        with pytest.raises((LimitExceeded, ValidationError), match="max_payload"):
            await rt.board.write("big", BIG)
        # an answer too large comes back as the limit, at once, not as a timeout
        with pytest.raises((LimitExceeded, RemoteError), match=r"max_payload|LimitExceeded"):
            await me.request("echo", "grow", {"n": 1_100_000}, timeout=10)
        assert await me.request("echo", "back", {"text": "still serving"}) == "still serving"


async def test_the_memory_limit_can_be_raised() -> None:
    from agentcomm.transports.memory import MemoryTransport

    async with Runtime(transport=MemoryTransport(max_payload=4 << 20), agents=[_echo()]) as rt:
        assert await rt.agent("me").request("echo", "back", {"text": BIG}) == BIG
