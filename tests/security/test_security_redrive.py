"""Redriving a signed event that had a TTL: verified as stored, handled without the TTL."""

from __future__ import annotations

import msgspec

from agentcomm import Agent
from agentcomm.core.envelope import encode_payload
from agentcomm.core.flow import RetryPolicy
from agentcomm.security.signing import Identity, Security
from agentcomm.testing.fixtures import MakeRuntime
from agentcomm.testing.waits import wait_dead_letters

DEADLINE = 10.0
ONCE = RetryPolicy(max_attempts=1, backoff=0.005, jitter=0.0)


async def test_redrive_of_a_signed_event_with_a_ttl_runs_the_handler(
    make_runtime: MakeRuntime,
) -> None:
    security = Security(identities=[Identity.generate(n) for n in ("shop", "audit")])
    got: list[int] = []
    broken = [True]
    audit = Agent("audit")

    @audit.on("orders.*", retry=ONCE)
    async def record(id: int) -> None:
        if broken[0]:
            raise RuntimeError("ledger offline")
        got.append(id)

    async with make_runtime(agents=[audit], security=security) as rt:
        await rt.agent("shop").publish("orders.created", {"id": 7}, ttl=60.0)
        (dl,) = await wait_dead_letters(rt, 1)
        assert dl.event.deadline is not None  # stored signed, with its TTL
        broken[0] = False
        assert await rt.events.redrive(dl.sequence) is True
        assert got == [7]
        assert rt.guard is not None
        assert rt.guard._redriven == []  # released after the redrive

        # A dead letter whose stored event was tampered with is not trusted by redrive.
        guard = rt.guard
        tampered = msgspec.structs.replace(dl.event, payload=encode_payload({"id": 666}))
        assert guard.redrive(tampered) is tampered
        bad = guard.admit_event("audit", tampered)
        assert bad is not None
        assert bad[0] == "unauthenticated"
        stripped = guard.redrive(dl.event)
        try:
            assert stripped.deadline is None
            assert guard.admit_event("audit", stripped) is None
            # an equal copy that redrive did not hand out is checked as usual
            copy = msgspec.structs.replace(stripped)
            assert guard.admit_event("audit", copy) is not None
        finally:
            guard.release(stripped)
        assert guard.admit_event("audit", stripped) is not None
