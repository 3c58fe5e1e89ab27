"""The engine contract, the key/value store: run on every transport, no runtime."""

from agentcomm.testing.contract.engine_kv import *  # noqa: F403
