"""Blackboard contract, run on every registered transport."""

from agentcomm.testing.contract.blackboard import *  # noqa: F403
