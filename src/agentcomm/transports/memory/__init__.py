"""The in-memory engine: a complete implementation of the transport contracts.

Imports only the core and the contracts.
"""

from agentcomm.transports.memory.transport import MemoryTransport

__all__ = ["MemoryTransport"]
