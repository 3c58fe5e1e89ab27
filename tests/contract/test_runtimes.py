"""Several runtimes on one engine (a queue group, cancels, patterns across, closing one)."""

from agentcomm.testing.contract.runtimes import *  # noqa: F403
