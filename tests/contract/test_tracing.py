"""The tracing contract suite, run on every transport."""

from agentcomm.testing.contract.tracing import *  # noqa: F403
