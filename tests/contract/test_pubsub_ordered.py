"""The ordered consumer group contract suite, run on every transport."""

from agentcomm.testing.contract.pubsub_ordered import *  # noqa: F403
