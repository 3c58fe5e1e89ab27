"""The exception tree of agentcomm.

Every error the library raises on purpose derives from :class:`AgentCommError`::

    AgentCommError
    ├── ConfigurationError              a bad argument, name, key or topic (fix the code)
    ├── TransportError                  the engine failed (connection lost, broker error)
    │   └── TransportClosed             the runtime or transport is not running
    ├── DeliveryError                   a message could not be delivered or answered
    │   ├── NoResponders                nobody serves the recipient (raised at once)
    │   ├── RequestTimeout              no answer before the deadline (also a TimeoutError)
    │   ├── MailboxFull                 the recipient's bounded mailbox is full
    │   ├── RateLimited                 a publisher exceeded its rate limit
    │   ├── UnknownHandler              the recipient has no handler of that name
    │   └── RemoteError                 the remote handler raised; carries its type and message
    ├── BlackboardError
    │   └── RevisionConflict            compare-and-set lost: someone wrote first
    │       └── KeyExists               create() on a key that is present
    ├── ValidationError                 a payload or envelope does not match its schema
    │   ├── DecodeError                 bytes that do not decode (an envelope, a stored record)
    │   │   └── UnsupportedVersion      an envelope of a wire version this library does not know
    │   ├── LimitExceeded               too large, too many headers, nested too deep
    │   └── AuthenticationError         unsigned, forged or tampered (signing is on)
    │       └── ReplayDetected          an id already seen, or outside its validity window
    ├── PermissionDenied                an access rule refused the operation
    ├── ClientUnsupported               the caller's client cannot do it (in core/callers.py)
    ├── InputDeclined                   the caller declined a ctx.ask() question (core/callers.py)
    └── TaskError                       a durable task refused an operation, or ended badly
                                        (the task errors live in core/task_errors.py)
        ├── UnknownTask                 no task with that id (never started, or past retention)
        ├── InvalidTransition           a state change the task state machine forbids
        │   ├── TaskNotWaiting          answer() to a task that is not input-required
        │   └── TaskFinished            cancel() or answer() on a completed/failed/canceled task
        ├── TaskCancelled               result() of a task that was canceled
        ├── TaskLost                    its worker died; policy said fail, or no attempts left
        └── InputTimeout                ctx.ask() got no answer in time (also a TimeoutError)

Handlers may raise :class:`Retry` or :class:`Reject` to steer redelivery of events;
they are control-flow signals, not failures, and also derive from AgentCommError.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AgentCommError",
    "AuthenticationError",
    "BlackboardError",
    "ConfigurationError",
    "DecodeError",
    "DeliveryError",
    "KeyExists",
    "LimitExceeded",
    "MailboxFull",
    "NoResponders",
    "PermissionDenied",
    "RateLimited",
    "Reject",
    "RemoteError",
    "ReplayDetected",
    "RequestTimeout",
    "Retry",
    "RevisionConflict",
    "TransportClosed",
    "TransportError",
    "UnknownHandler",
    "UnsupportedVersion",
    "ValidationError",
]


class AgentCommError(Exception):
    """Root of every error agentcomm raises.

    Example::

        try:
            await alice.request("bob", "ping", {})
        except AgentCommError as exc:
            print("agentcomm failed:", exc)
    """


class ConfigurationError(AgentCommError, ValueError):
    """A bad argument: an invalid agent name, key, topic or option.

    Example::

        rt.agent("has space")  # raises ConfigurationError
    """


class TransportError(AgentCommError):
    """The messaging engine failed (connection lost, broker refused, ...).

    Example::

        except TransportError: reconnect_later()
    """


class TransportClosed(TransportError):
    """The runtime or transport is not running; use it inside ``async with``.

    Example::

        async with Runtime() as rt: ...  # operations work only in here
    """


class DeliveryError(AgentCommError):
    """A message could not be delivered or answered.

    Example::

        except DeliveryError as exc: log.warning("delivery failed: %s", exc)
    """


class NoResponders(DeliveryError):
    """Nobody serves the recipient; raised at once, never after a timeout.

    Example::

        await alice.request("nobody", "ping", {})  # raises NoResponders
    """

    def __init__(self, recipient: str) -> None:
        super().__init__(
            f"no agent named {recipient!r} is registered; start it before sending to it"
        )
        self.recipient = recipient


class RequestTimeout(DeliveryError, TimeoutError):
    """No response arrived before the deadline. Also a :class:`TimeoutError`.

    Example::

        await alice.request("slow", "work", {}, timeout=0.5)  # may raise RequestTimeout
    """

    def __init__(self, recipient: str, handler: str | None, timeout: float) -> None:
        target = f"{recipient}.{handler}" if handler else recipient
        super().__init__(f"{target} did not answer within {timeout:g}s")
        self.recipient = recipient
        self.handler = handler
        self.timeout = timeout


class MailboxFull(DeliveryError):
    """The recipient's bounded mailbox is full and the caller chose not to wait.

    Example::

        await alice.send("bob", "note", {}, block=False)  # may raise MailboxFull
    """

    def __init__(
        self, recipient: str, capacity: int | None, *, waited: float | None = None
    ) -> None:
        if waited is None:
            msg = (
                f"mailbox of {recipient!r} is full ({capacity} messages); "
                "retry later, send with block=True, or raise the agent's mailbox_size"
            )
        else:
            msg = (
                f"mailbox of {recipient!r} was still full after waiting {waited:g}s; "
                "the agent is not keeping up: give it more concurrency or send less"
            )
        super().__init__(msg)
        self.recipient = recipient
        self.capacity = capacity
        self.waited = waited


class RateLimited(DeliveryError):
    """A publisher exceeded its rate limit and asked not to wait.

    Example::

        await agent.publish("t", {}, wait=False)  # may raise RateLimited
    """

    def __init__(self, what: str, retry_after: float) -> None:
        super().__init__(f"rate limit of {what} exceeded; retry after {retry_after:.3f}s")
        self.retry_after = retry_after


class UnknownHandler(DeliveryError):
    """The recipient exists but has no handler of that name.

    Example::

        await alice.request("bob", "no_such_handler", {})  # raises UnknownHandler
    """


class RemoteError(DeliveryError):
    """The remote handler raised; ``type`` and ``message`` describe the remote exception.

    A relayed error (a handler let through what an agent it called raised) reads as
    one chain: ``origin`` raised it, ``source`` answered.

    Example::

        try:
            await alice.request("bob", "divide", {"a": 1, "b": 0})
        except RemoteError as exc:
            assert exc.type == "ZeroDivisionError"
    """

    def __init__(self, source: str, type: str, message: str, origin: str | None = None) -> None:
        where = source if origin in (None, source) else f"{origin} (relayed by {source})"
        super().__init__(f"{where} raised {type}: {message}")
        self.source = source
        self.type = type
        self.message = message
        #: Where it was raised: ``source`` itself, or the agent behind the relays.
        self.origin = origin or source


class BlackboardError(AgentCommError):
    """Base of blackboard errors.

    Example::

        except BlackboardError: ...
    """


class RevisionConflict(BlackboardError):
    """A compare-and-set write lost: the key changed since ``expected`` revision.

    ``current`` is the entry now stored (``None`` if the key is absent).

    Example::

        try:
            await board.write("k", 1, expected_revision=3)
        except RevisionConflict as exc:
            print("someone wrote first:", exc.current)
    """

    def __init__(self, key: str, expected: int | None, current: Any) -> None:
        now = getattr(current, "revision", None)
        where = "it is absent" if now is None else f"it is at revision {now}"
        wanted = "absent" if expected in (None, 0) else f"revision {expected}"
        super().__init__(
            f"key {key!r}: expected {wanted}, but {where}; "
            "read it again and retry (or use board.update())"
        )
        self.key = key
        self.expected = expected
        self.current = current


class KeyExists(RevisionConflict):
    """``create()`` found the key already present.

    Example::

        await board.create("k", 1); await board.create("k", 2)  # raises KeyExists
    """


class ValidationError(AgentCommError, ValueError):
    """A payload does not match its declared schema; the handler never ran.

    Example::

        await alice.request("bob", "add", {"a": "one"})  # raises ValidationError
    """


class DecodeError(ValidationError):
    """Bytes from the wire or a store that do not decode: not JSON, not UTF-8, wrong
    types, missing fields, numbers out of range, or over the wire limits (nested
    deeper than 256 levels, larger than 64 MiB; see ``docs/security.md``).

    Example::

        decode_envelope(b"not json")  # raises DecodeError
    """


class UnsupportedVersion(DecodeError):
    """An envelope whose wire version ``v`` this library does not understand.

    ``version`` is the one received, ``supported`` the versions understood.

    Example::

        decode_envelope(b'{"id": "1", "kind": "event", "sender": "a", "v": 2}')
        # raises UnsupportedVersion: ... understands wire version 1
    """

    def __init__(self, version: object, supported: tuple[int, ...]) -> None:
        names = ", ".join(str(v) for v in supported)
        super().__init__(
            f"envelope has wire version {version!r}; this agentcomm understands only wire "
            f"version {names}: send that, or upgrade the receiver if the sender is newer"
        )
        self.version = version
        self.supported = supported


class LimitExceeded(ValidationError):
    """An envelope breaks a size limit (payload, headers, nesting depth); never handled.

    ``limit`` names the setting of :class:`~agentcomm.limits.Limits` that refused it.

    Example::

        await alice.send("bob", "note", {"text": "x" * 10**7})  # raises LimitExceeded
    """

    def __init__(self, message: str, *, limit: str = "") -> None:
        super().__init__(message)
        self.limit = limit


class AuthenticationError(ValidationError):
    """With signing on, an envelope is unsigned, signed by an unknown key, forged or tampered.

    Example::

        try:
            security.verify(env)
        except AuthenticationError as exc:
            print("refused:", exc)
    """


class ReplayDetected(AuthenticationError):
    """A signed envelope was seen before, or is outside its validity window (too old).

    Example::

        security.verify(env); security.verify(env)  # the second raises ReplayDetected
    """


class PermissionDenied(AgentCommError):
    """An access rule refused the operation; the message names the rule.

    ``agent``, ``action``, ``target`` and ``rule`` are set when a
    :class:`~agentcomm.security.policy.Policy` refused (``rule`` names the policy entry).

    Example::

        except PermissionDenied as exc: print(exc.rule, exc)
    """

    def __init__(
        self,
        message: str,
        *,
        agent: str | None = None,
        action: str | None = None,
        target: str | None = None,
        rule: str | None = None,
    ) -> None:
        super().__init__(message)
        self.agent = agent
        self.action = action
        self.target = target
        self.rule = rule


class Retry(AgentCommError):
    """Raised by an event handler to ask for redelivery after ``delay`` seconds.

    Example::

        @agent.on("orders.*")
        async def handle(order: Order) -> None:
            if not ready():
                raise Retry(delay=2.0)
    """

    def __init__(self, delay: float | None = None, reason: str = "handler asked to retry") -> None:
        super().__init__(reason)
        self.delay = delay
        self.reason = reason


class Reject(AgentCommError):
    """Raised by an event handler to send the event straight to the dead-letter queue.

    Example::

        raise Reject("order has no customer id")
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
