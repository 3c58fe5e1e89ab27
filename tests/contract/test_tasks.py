"""The durable tasks contract suite, run on every transport."""

from agentcomm.testing.contract.tasks import *  # noqa: F403
