"""The engine contract, core pub/sub (broadcast): run on every transport, no runtime."""

from agentcomm.testing.contract.engine_broadcast import *  # noqa: F403
