"""The pub/sub fault contract suite (handler timeouts, restarts), run on every transport."""

from agentcomm.testing.contract.pubsub_faults import *  # noqa: F403
