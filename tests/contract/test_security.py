"""The security contract suite (signing, replay, policy, limits), run on every transport."""

from agentcomm.testing.contract.security import *  # noqa: F403
