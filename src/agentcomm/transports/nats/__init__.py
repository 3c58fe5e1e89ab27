"""The NATS JetStream engine: core request/reply, streams, key/value.

Imports only the core and the contracts (and nats-py).
"""

from agentcomm.transports.nats.statistics import NatsStatistics
from agentcomm.transports.nats.transport import NatsTransport

__all__ = ["NatsStatistics", "NatsTransport"]
