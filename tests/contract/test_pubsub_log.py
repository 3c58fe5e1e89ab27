"""The pub/sub log, dead-letter and flow contract suite, run on every transport."""

from agentcomm.testing.contract.pubsub_log import *  # noqa: F403
