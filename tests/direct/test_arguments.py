"""Arguments are checked at the call, with typed errors that name them (issue 15)."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("bad", ["5", float("nan"), float("inf"), -1, True])
async def test_a_bad_timeout_is_refused_at_the_call(bad: object) -> None:
    """Issue 15: TypeError, ValueError, OverflowError or "within -1s" before; now one
    typed error naming the parameter, and nothing is sent."""
    from agentcomm import Agent, ConfigurationError, Runtime

    calc = Agent("calc")

    @calc.handler
    async def add(a: int, b: int) -> int:
        return a + b

    async with Runtime(agents=[calc]) as rt:
        me = rt.agent("me")
        with pytest.raises(ConfigurationError, match=r"^timeout must be a number of seconds"):
            await me.request("calc", "add", {"a": 1, "b": 2}, timeout=bad)  # type: ignore[arg-type]
        with pytest.raises(ConfigurationError, match=r"^ttl must be"):
            await me.send("calc", "add", {"a": 1, "b": 2}, ttl=bad)  # type: ignore[arg-type]
        assert calc.statistics().received == 0


async def test_a_payload_too_deep_to_encode_is_a_limit() -> None:
    from agentcomm import LimitExceeded, Runtime

    deep: list[object] = []
    cur = deep
    for _ in range(5000):
        nxt: list[object] = []
        cur.append(nxt)
        cur = nxt
    async with Runtime() as rt:
        with pytest.raises(LimitExceeded, match="flatten") as info:
            await rt.agent("me").request("anyone", "x", {"x": deep})
    assert info.value.limit == "max_depth"
