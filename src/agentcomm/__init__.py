"""agentcomm: how the agents of a multi-agent system talk to each other.

Direct messages, streams, durable tasks, a shared blackboard, pub/sub events and MCP
tools, on one runtime, in-process by default or on NATS JetStream.

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

from agentcomm.api import Agent, Context, Runtime
from agentcomm.blackboard.board import Blackboard, BoardStatistics, Change, Entry, Watch
from agentcomm.core.callers import ClientUnsupported, InputDeclined, Root
from agentcomm.core.envelope import Envelope, ErrorInfo, decode_envelope, encode_envelope, new_id
from agentcomm.core.errors import (
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
from agentcomm.core.flow import RateLimit, Retention, RetryPolicy
from agentcomm.core.limits import Limits
from agentcomm.core.progress import Progress
from agentcomm.core.task_errors import (
    InputTimeout,
    InvalidTransition,
    TaskCancelled,
    TaskError,
    TaskFinished,
    TaskLost,
    TaskNotWaiting,
    UnknownTask,
)
from agentcomm.core.version import __version__
from agentcomm.direct.streams import Stream
from agentcomm.host.agent import AgentStatistics
from agentcomm.host.message_log import MessageLog
from agentcomm.host.runtime_stats import RuntimeStatistics
from agentcomm.pubsub.bus import (
    Alert,
    DeadLetter,
    PubSub,
    PubSubStatistics,
    SubscriptionStatistics,
    TopicStatistics,
)
from agentcomm.security.keyring import Keyring
from agentcomm.security.policy import Policy, Rules
from agentcomm.security.quoting import quote_untrusted
from agentcomm.security.signing import Identity, Security
from agentcomm.tasks.handle import TaskHandle
from agentcomm.tasks.model import Question, TaskRetention, TaskStatus, TaskUpdate
from agentcomm.tasks.stats import TaskStatistics
from agentcomm.tools.catalogue import ToolError, ToolInfo, Tools
from agentcomm.tools.content import Audio, Image, Message, Resource
from agentcomm.transports.base import Transport

__all__ = [
    "Agent",
    "AgentCommError",
    "AgentStatistics",
    "Alert",
    "Audio",
    "AuthenticationError",
    "Blackboard",
    "BlackboardError",
    "BoardStatistics",
    "Change",
    "ClientUnsupported",
    "ConfigurationError",
    "Context",
    "DeadLetter",
    "DecodeError",
    "DeliveryError",
    "Entry",
    "Envelope",
    "ErrorInfo",
    "Identity",
    "Image",
    "InputDeclined",
    "InputTimeout",
    "InvalidTransition",
    "KeyExists",
    "Keyring",
    "LimitExceeded",
    "Limits",
    "MailboxFull",
    "Message",
    "MessageLog",
    "NoResponders",
    "PermissionDenied",
    "Policy",
    "Progress",
    "PubSub",
    "PubSubStatistics",
    "Question",
    "RateLimit",
    "RateLimited",
    "Reject",
    "RemoteError",
    "ReplayDetected",
    "RequestTimeout",
    "Resource",
    "Retention",
    "Retry",
    "RetryPolicy",
    "RevisionConflict",
    "Root",
    "Rules",
    "Runtime",
    "RuntimeStatistics",
    "Security",
    "Stream",
    "SubscriptionStatistics",
    "TaskCancelled",
    "TaskError",
    "TaskFinished",
    "TaskHandle",
    "TaskLost",
    "TaskNotWaiting",
    "TaskRetention",
    "TaskStatistics",
    "TaskStatus",
    "TaskUpdate",
    "ToolError",
    "ToolInfo",
    "Tools",
    "TopicStatistics",
    "Transport",
    "TransportClosed",
    "TransportError",
    "UnknownHandler",
    "UnknownTask",
    "UnsupportedVersion",
    "ValidationError",
    "Watch",
    "__version__",
    "decode_envelope",
    "encode_envelope",
    "new_id",
    "quote_untrusted",
]
