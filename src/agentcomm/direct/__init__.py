"""Direct messages: send and request/response between agents.

A pattern over the host: imports the host, the transports and the core, no other pattern.
"""

from agentcomm.direct.messaging import DirectMessages

__all__ = ["DirectMessages"]
