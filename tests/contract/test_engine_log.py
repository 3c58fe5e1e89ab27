"""The engine contract, the event log's streams: run on every transport, no runtime."""

from agentcomm.testing.contract.engine_log import *  # noqa: F403
