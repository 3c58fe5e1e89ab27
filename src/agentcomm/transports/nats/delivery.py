"""A direct message delivered by the NATS transport, and its reply.

The response to a request goes to the NATS reply subject of the request; an
answer over the server's ``max_payload`` is replaced by a ``limit`` error, so the
caller learns why instead of timing out.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Protocol

import nats.errors

from agentcomm.core.envelope import encode_envelope
from agentcomm.core.errors import AgentCommError
from agentcomm.core.responses import error_response
from agentcomm.transports.base import Delivery

if TYPE_CHECKING:
    from nats.aio.client import Client

    from agentcomm.core.envelope import Envelope

__all__ = ["NatsDelivery"]

logger = logging.getLogger("agentcomm.nats")


class _Owner(Protocol):
    """What a delivery needs of its transport."""

    @property
    def client(self) -> Client: ...

    _reply_failures: int


class NatsDelivery(Delivery):
    """``envelope`` as received; :meth:`reply` answers on the NATS reply subject."""

    __slots__ = ("_reply", "_transport")

    def __init__(self, envelope: Envelope, transport: _Owner, reply: str) -> None:
        self.envelope = envelope
        self._transport = transport
        self._reply = reply

    async def reply(self, response: Envelope) -> None:
        if not self._reply:
            return
        try:
            try:
                await self._transport.client.publish(self._reply, encode_envelope(response))
            except nats.errors.MaxPayloadError as exc:  # answer why, not a timeout
                err = error_response(
                    self.envelope,
                    response.sender,
                    "limit",
                    "LimitExceeded",
                    f"its answer is over the NATS server's max_payload ({exc})",
                )
                await self._transport.client.publish(self._reply, encode_envelope(err))
        except (nats.errors.Error, OSError, AgentCommError) as exc:
            # Never raise into the agent's worker: the requester times out instead.
            self._transport._reply_failures += 1
            logger.warning("response to %s not sent: %s", self.envelope.sender, exc)
