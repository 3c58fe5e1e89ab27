"""The pub/sub contract suite, run on every transport."""

from agentcomm.testing.contract.pubsub import *  # noqa: F403
