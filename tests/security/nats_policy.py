"""What the NATS policy tests share: the policy, the agents' passwords, two agents.

Used by tests/security/test_policy_nats.py (the broker enforces the policy) and
tests/security/test_policy_nats_receiver.py (the receiving runtime does).
"""

from __future__ import annotations

from agentcomm import Agent

NS = "sec"
POLICY = """
[agents.alice]
send = ["calc.add"]
publish = ["orders.*"]
write = ["notes."]
[agents.calc]
[agents.bob]
send = ["calc.add"]
[agents.auditor]
subscribe = ["orders.*"]
subscriptions = ["audit"]
read = ["notes."]
"""
PASSWORDS = {"alice": "pw-alice", "calc": "pw-calc", "bob": "pw-bob", "auditor": "pw-auditor"}


def calc_and_bob(calls: list[str]) -> tuple[Agent, Agent]:
    calc, bob = Agent("calc"), Agent("bob")

    @calc.handler
    async def add(a: int, b: int) -> int:
        calls.append("calc.add")
        return a + b

    @bob.handler
    async def secret(text: str) -> str:
        calls.append("bob.secret")
        return "the secret"

    return calc, bob
