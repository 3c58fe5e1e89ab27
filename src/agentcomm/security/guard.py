"""The runtime's boundary checks: one object the hot paths consult only when it exists.

A runtime builds a :class:`Guard` only when it was given ``security=``, ``limits=``,
or an access hook on a transport that crosses processes; otherwise ``rt.guard`` is
``None`` and every hook point is one ``is not None`` test. Outbound, :meth:`seal`
checks limits and signs; inbound, :meth:`admit` (direct messages) and
:meth:`admit_event` (events) check limits, verify the signature and re-check the
access policy against the authenticated sender, before any handler runs.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import msgspec

from agentcomm.core.errors import (
    AuthenticationError,
    ConfigurationError,
    LimitExceeded,
    PermissionDenied,
    RateLimited,
    RequestTimeout,
    ValidationError,
)
from agentcomm.core.flow import RateBuckets

if TYPE_CHECKING:
    from agentcomm.core.envelope import Envelope
    from agentcomm.core.limits import Limits
    from agentcomm.host.runtime import Runtime
    from agentcomm.security.signing import Security

__all__ = ["Guard", "error_code"]

logger = logging.getLogger("agentcomm")


def error_code(exc: Exception) -> str:
    """The ``ErrorInfo.code`` that carries ``exc`` back to a requester.

    Example::

        error_code(LimitExceeded("too big"))  # "limit"
    """
    if isinstance(exc, LimitExceeded):
        return "limit"
    if isinstance(exc, AuthenticationError):
        return "authentication"
    if isinstance(exc, PermissionDenied):
        return "permission"
    return "validation"


_EVENT_REASONS = {"limit": "too_large", "authentication": "unauthenticated"}
MAX_TRACKED_SENDERS = 10_000  # rate-limit buckets kept; the least recently used go first


class Guard:
    """Limits, signatures and receiver-side policy checks of one runtime.

    Example::

        guard = Guard(rt, security=Security(identities=[alice]), limits=Limits())
        env = guard.seal(env)                # sender side
        assert guard.admit("bob", env) is None  # receiver side
    """

    __slots__ = (
        "_incoming",
        "_outgoing",
        "_redriven",
        "limits",
        "rated",
        "recheck",
        "runtime",
        "security",
    )

    def __init__(
        self, runtime: Runtime, *, security: Security | None, limits: Limits | None
    ) -> None:
        self.runtime = runtime
        self.security = security
        self.limits = limits
        self.rated = limits is not None and limits.sender_rate is not None
        # Across processes the receiver re-checks the policy against the sender named in
        # the (authenticated) envelope; in one process the sender's check already ran.
        self.recheck = runtime.transport.name != "memory"
        self._outgoing = RateBuckets(MAX_TRACKED_SENDERS)  # our senders, held at their rate
        self._incoming = RateBuckets(MAX_TRACKED_SENDERS)  # remote senders, refused above it
        self._redriven: list[Envelope] = []  # verified as stored, then stripped of their TTL

    async def hold(self, env: Envelope, deadline: float | None = None) -> Envelope:
        """Wait for the sender's rate limit (if any), then :meth:`seal` a direct message.

        The wait never passes ``deadline`` (a ``time.time()`` value; default the
        envelope's own deadline: a request's timeout, a notification's TTL): when
        the next token comes later, a request raises :class:`RequestTimeout` and
        anything else :class:`RateLimited`, at once.

        Example::

            env = await guard.hold(env)
        """
        limits = self.limits
        if limits is not None and limits.sender_rate is not None:
            bucket = self._outgoing.get(env.sender, limits.sender_rate)
            if deadline is None:
                deadline = env.deadline
            try:
                await bucket.take(f"sender {env.sender!r}", wait=True, deadline=deadline)
            except RateLimited:
                if env.kind != "request" or env.deadline is None:
                    raise
                timeout = env.deadline - (env.created or env.deadline)
                raise RequestTimeout(env.recipient or "", env.handler, timeout) from None
        return self.seal(env)

    def seal(self, env: Envelope) -> Envelope:
        """Check an outgoing envelope against the limits, then sign it.

        Example::

            env = guard.seal(env)
        """
        if self.limits is not None:
            self.limits.check(env)
        if self.security is not None:
            env = self.security.sign(env)
        return env

    def seal_reply(self, request: Envelope, resp: Envelope) -> Envelope:
        """Seal a response; a response that breaks a limit becomes a (sealed) error.

        Example::

            resp = guard.seal_reply(env, resp)
        """
        try:
            try:
                return self.seal(resp)
            except LimitExceeded as exc:
                from agentcomm.core.responses import error_response

                err = error_response(request, resp.sender, "limit", "LimitExceeded", str(exc))
                return self.seal(err)
        except ConfigurationError as exc:
            # This agent has no signing identity. Never raise into its worker: the
            # answer goes out unsigned, and the requester refuses it as unsigned.
            logger.error("agent %s cannot sign its answer: %s", resp.sender, exc)
            return resp

    def _inbound(self, env: Envelope, replay: bool) -> None:
        if self.limits is not None:
            self.limits.check(env)
        if self.security is not None:
            self.security.verify(env, replay=replay)

    def admit(self, agent: str, env: Envelope) -> tuple[str, str, str] | None:
        """``None`` when ``agent`` may handle ``env``, else ``(code, type, message)``.

        Example::

            if (bad := guard.admit("bob", env)) is not None: refuse(*bad)
        """
        bad = self._admitted(agent, env, replay=True, what="message")
        if bad is not None:
            return bad
        limits = self.limits
        if self.recheck and limits is not None and limits.sender_rate is not None:
            # A sender using the library waits at its end; one that floods anyway is
            # refused. Twice the burst absorbs messages bunched up by the network.
            rate = limits.sender_rate
            lenient = msgspec.structs.replace(rate, burst=2 * rate.burst)
            delay = self._incoming.get(env.sender, lenient).try_take()
            if delay > 0.0:
                msg = f"sender {env.sender!r} exceeds its rate limit; retry after {delay:.3f}s"
                return "error", "RateLimited", msg
        return None

    def redrive(self, env: Envelope) -> Envelope:
        """The dead-lettered ``env`` without its TTL, for :meth:`PubSub.redrive`.

        The deadline is a signed field, so the stripped copy no longer matches the
        sender's signature and this runtime cannot sign for the sender. So the event
        is verified here as it was stored (tampering or a forged sender still fail),
        and :meth:`admit_event` accepts the signature of exactly this copy until
        :meth:`release`. An event that fails verification is returned unchanged, and
        is dead-lettered again as ``unauthenticated``.

        Example::

            env = guard.redrive(dead_letter.event)
            try: ...  # hand env to the subscriber
            finally: guard.release(env)
        """
        if env.deadline is None:
            return env
        if self.security is not None:
            try:
                self.security.verify(env, replay=False)
            except ValidationError:
                return env
        out = msgspec.structs.replace(env, deadline=None)
        self._redriven.append(out)
        return out

    def release(self, env: Envelope) -> None:
        """Forget an envelope returned by :meth:`redrive`.

        Example::

            guard.release(env)
        """
        self._redriven = [e for e in self._redriven if e is not env]

    def admit_event(self, agent: str, env: Envelope) -> tuple[str, str] | None:
        """``None`` when ``agent`` may handle the event, else ``(dead-letter reason, error)``.

        Reasons: ``"too_large"``, ``"unauthenticated"``, ``"forbidden"``, ``"invalid"``.

        Example::

            if (bad := guard.admit_event("auditor", env)) is not None: dead_letter(*bad)
        """
        try:
            if any(e is env for e in self._redriven):  # verified before its TTL was dropped
                if self.limits is not None:
                    self.limits.check(env)
            else:
                self._inbound(env, replay=False)
            if self.recheck:
                self.runtime.authorize(env.sender, "publish", env.topic or "")
        except PermissionDenied as exc:
            return "forbidden", str(exc)
        except ValidationError as exc:
            return _EVENT_REASONS.get(error_code(exc), "invalid"), str(exc)
        except Exception as exc:  # a custom access hook failed: refuse, never crash a worker
            logger.exception("access hook failed on event %s from %s", env.id, env.sender)
            return "forbidden", f"{type(exc).__name__}: {exc}"
        return None

    def admit_work(self, agent: str, env: Envelope) -> tuple[str, str, str] | None:
        """``None`` when ``agent`` may run the durable task ``env`` asks for, else
        ``(code, type, message)``.

        As :meth:`admit`, except that the same work may arrive again (a worker that
        died, a lease that lapsed: the task is re-run), so its id is no replay.

        Example::

            if (bad := guard.admit_work("researcher", work)) is not None: fail(*bad)
        """
        return self._admitted(agent, env, replay=False, what="task work")

    def _admitted(
        self, agent: str, env: Envelope, *, replay: bool, what: str
    ) -> tuple[str, str, str] | None:
        """Limits, signature (and replay), recipient and policy of an inbound message."""
        try:
            self._inbound(env, replay=replay)
            if env.recipient != agent and self.security is not None:
                # A signed message captured on its way to one agent, replayed to another.
                raise AuthenticationError(
                    f"{what} {env.id!r} is addressed to {env.recipient!r} but was "
                    f"delivered to {agent!r}"
                )
            if self.recheck:
                self.runtime.authorize(env.sender, "send", f"{agent}.{env.handler}")
        except (ValidationError, PermissionDenied) as exc:
            return error_code(exc), type(exc).__name__, str(exc)
        except Exception as exc:  # a custom access hook failed: refuse, never crash a worker
            logger.exception("access hook failed on %s %s from %s", what, env.id, env.sender)
            return "error", type(exc).__name__, str(exc)
        return None

    def check_response(self, request: Envelope, resp: Envelope) -> None:
        """Raise when a response breaks the limits or is not signed by the requested agent.

        Example::

            guard.check_response(env, resp)
        """
        self._inbound(resp, replay=False)
        if self.security is not None and resp.sender != request.recipient:
            raise AuthenticationError(
                f"the answer to {request.id!r} was sent to {request.recipient!r} but "
                f"signed by {resp.sender!r}"
            )
