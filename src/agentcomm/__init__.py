"""agentcomm: how the agents of a multi-agent system talk to each other.

Direct messages, a shared blackboard, pub/sub events and MCP tools, on one runtime,
in-process by default or on NATS JetStream.

Example::

    import asyncio
    from agentcomm import Agent, Runtime

    calc = Agent("calc")

    @calc.handler
    async def add(a: int, b: int) -> int:
        "Add two integers."
        return a + b

    async def main() -> None:
        async with Runtime(agents=[calc]) as rt:
            print(await rt.agent("me").request("calc", "add", {"a": 1, "b": 2}))

    asyncio.run(main())
"""

from .agent import Agent, AgentStatistics
from .blackboard import Blackboard, BoardStatistics, Change
from .context import Context
from .envelope import Envelope, ErrorInfo, decode_envelope, encode_envelope, new_id
from .errors import (
    AgentCommError,
    BlackboardError,
    ConfigurationError,
    DecodeError,
    DeliveryError,
    KeyExists,
    MailboxFull,
    NoResponders,
    PermissionDenied,
    RateLimited,
    Reject,
    RemoteError,
    RequestTimeout,
    Retry,
    RevisionConflict,
    TransportClosed,
    TransportError,
    UnknownHandler,
    ValidationError,
)
from .flow import RateLimit, Retention, RetryPolicy
from .pubsub import (
    Alert,
    DeadLetter,
    PubSub,
    PubSubStatistics,
    SubscriptionStatistics,
    TopicStatistics,
)
from .runtime import MessageLog, Runtime, RuntimeStatistics
from .tools import ToolError, ToolInfo, Tools
from .transports.base import Transport

__version__ = "0.1.0"

__all__ = [
    "Agent",
    "AgentCommError",
    "AgentStatistics",
    "Alert",
    "Blackboard",
    "BlackboardError",
    "BoardStatistics",
    "Change",
    "ConfigurationError",
    "Context",
    "DeadLetter",
    "DecodeError",
    "DeliveryError",
    "Envelope",
    "ErrorInfo",
    "KeyExists",
    "MailboxFull",
    "MessageLog",
    "NoResponders",
    "PermissionDenied",
    "PubSub",
    "PubSubStatistics",
    "RateLimit",
    "RateLimited",
    "Reject",
    "RemoteError",
    "RequestTimeout",
    "Retention",
    "Retry",
    "RetryPolicy",
    "RevisionConflict",
    "Runtime",
    "RuntimeStatistics",
    "SubscriptionStatistics",
    "ToolError",
    "ToolInfo",
    "Tools",
    "TopicStatistics",
    "Transport",
    "TransportClosed",
    "TransportError",
    "UnknownHandler",
    "ValidationError",
    "__version__",
    "decode_envelope",
    "encode_envelope",
    "new_id",
]
