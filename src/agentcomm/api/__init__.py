"""The public classes: Runtime, Agent and Context, composed from the host and the patterns.

Above the patterns and the cross-cutting packages; below the command line.
"""

from agentcomm.api.agent import Agent
from agentcomm.api.context import Context
from agentcomm.api.runtime import Runtime

__all__ = ["Agent", "Context", "Runtime"]
