"""The core (durable=False) pub/sub contract suite, run on every transport."""

from agentcomm.testing.contract.pubsub_core import *  # noqa: F403
