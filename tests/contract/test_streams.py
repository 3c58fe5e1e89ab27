"""The streams, progress and cancellation contract suite, run on every transport."""

from agentcomm.testing.contract.streams import *  # noqa: F403
