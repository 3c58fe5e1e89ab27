"""The engine contract, the event log's consumers: run on every transport, no runtime."""

from agentcomm.testing.contract.engine_consumers import *  # noqa: F403
