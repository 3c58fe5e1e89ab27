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
from .blackboard import Blackboard, BoardStatistics, Change, Entry, Watch
from .context import Context
from .envelope import Envelope, ErrorInfo, decode_envelope, encode_envelope, new_id
from .errors import (
    AgentCommError,
    AuthenticationError,
    BlackboardError,
    ConfigurationError,
    DecodeError,
    DeliveryError,
    KeyExists,
    LimitExceeded,
    MailboxFull,
    NoResponders,
    PermissionDenied,
    RateLimited,
    Reject,
    RemoteError,
    ReplayDetected,
    RequestTimeout,
    Retry,
    RevisionConflict,
    TransportClosed,
    TransportError,
    UnknownHandler,
    UnsupportedVersion,
    ValidationError,
)
from .flow import RateLimit, Retention, RetryPolicy
from .limits import Limits
from .policy import Policy, Rules
from .pubsub import (
    Alert,
    DeadLetter,
    PubSub,
    PubSubStatistics,
    SubscriptionStatistics,
    TopicStatistics,
)
from .runtime import MessageLog, Runtime, RuntimeStatistics
from .security import Identity, Keyring, Security, quote_untrusted
from .tools import ToolError, ToolInfo, Tools
from .transports.base import Transport

__version__ = "0.1.0"

__all__ = [
    "Agent",
    "AgentCommError",
    "AgentStatistics",
    "Alert",
    "AuthenticationError",
    "Blackboard",
    "BlackboardError",
    "BoardStatistics",
    "Change",
    "ConfigurationError",
    "Context",
    "DeadLetter",
    "DecodeError",
    "DeliveryError",
    "Entry",
    "Envelope",
    "ErrorInfo",
    "Identity",
    "KeyExists",
    "Keyring",
    "LimitExceeded",
    "Limits",
    "MailboxFull",
    "MessageLog",
    "NoResponders",
    "PermissionDenied",
    "Policy",
    "PubSub",
    "PubSubStatistics",
    "RateLimit",
    "RateLimited",
    "Reject",
    "RemoteError",
    "ReplayDetected",
    "RequestTimeout",
    "Retention",
    "Retry",
    "RetryPolicy",
    "RevisionConflict",
    "Rules",
    "Runtime",
    "RuntimeStatistics",
    "Security",
    "SubscriptionStatistics",
    "ToolError",
    "ToolInfo",
    "Tools",
    "TopicStatistics",
    "Transport",
    "TransportClosed",
    "TransportError",
    "UnknownHandler",
    "UnsupportedVersion",
    "ValidationError",
    "Watch",
    "__version__",
    "decode_envelope",
    "encode_envelope",
    "new_id",
    "quote_untrusted",
]
