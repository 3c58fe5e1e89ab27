"""The engine contract, messaging and channels: run on every transport, no runtime."""

from agentcomm.testing.contract.engine_messaging import *  # noqa: F403
