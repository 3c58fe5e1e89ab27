"""Arguments are checked at the call, with typed errors that name them (issue 15)."""

from __future__ import annotations

import pytest

from agentcomm import Agent, ConfigurationError, Context, LimitExceeded, RemoteError, Runtime


@pytest.mark.parametrize("bad", ["5", float("nan"), float("inf"), -1, True])
async def test_a_bad_timeout_is_refused_at_the_call(bad: object) -> None:
    """Issue 15: TypeError, ValueError, OverflowError or "within -1s" before; now one
    typed error naming the parameter, and nothing is sent."""
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


async def test_an_error_relayed_through_agents_reads_as_one_chain() -> None:
    """Issue 15: "billing raised RemoteError: customer-data raised LookupError: ..."."""
    data, billing = Agent("customer-data"), Agent("billing")

    @data.handler
    async def lookup(customer_id: str) -> dict[str, str]:
        raise LookupError(f"no customer {customer_id}")

    @billing.handler
    async def invoice(customer_id: str, ctx: Context) -> str:
        customer = await ctx.request("customer-data", "lookup", {"customer_id": customer_id})
        return f"invoice for {customer}"

    async with Runtime(agents=[data, billing]) as rt:
        with pytest.raises(RemoteError) as info:
            await rt.agent("desk").request("billing", "invoice", {"customer_id": "c-9"})
    err = info.value
    assert str(err) == "customer-data (relayed by billing) raised LookupError: no customer c-9"
    assert (err.type, err.message, err.source, err.origin) == (
        "LookupError",
        "no customer c-9",
        "billing",
        "customer-data",
    )


@pytest.mark.parametrize("name", ["bad name", "a.b", "", "orders.*"])
async def test_a_name_no_agent_can_have_is_named_invalid(name: str) -> None:
    async with Runtime() as rt:
        me = rt.agent("me")
        with pytest.raises(ConfigurationError, match="invalid agent name"):
            await me.request(name, "x")
        with pytest.raises(ConfigurationError, match="invalid agent name"):
            await me.send(name, "x")


async def test_a_lost_compare_and_set_on_an_absent_key_says_absent() -> None:
    from agentcomm import RevisionConflict

    async with Runtime() as rt:
        with pytest.raises(RevisionConflict, match="expected revision 5, but it is absent"):
            await rt.board.write("k", 1, expected_revision=5)
        first = await rt.board.write("k", 1)
        with pytest.raises(
            RevisionConflict, match=f"expected absent, but it is at revision {first}"
        ):
            await rt.board.create("k", 2)
