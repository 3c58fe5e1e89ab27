"""Publishing to JetStream so that a leader change never loses nor doubles a write.

When a stream's leader dies (a cluster node killed, a broker restarting), a publish
times out or finds no responder while the survivors elect a new one, and the
publisher cannot tell whether the message was stored. :func:`publish_retrying`
sends the *same* message again (same ``Nats-Msg-Id``) until the new leader answers
or ``retry_for`` seconds have passed: if the first attempt was stored, JetStream's
duplicate window turns the retry into the ack of that first attempt (it checks
message ids before ``Nats-Expected-Last-Subject-Sequence``, so a compare-and-set
that landed is not refused as a conflict on its retry). Nothing acknowledged is
lost, and nothing is stored twice.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import nats.errors
import nats.js.errors

if TYPE_CHECKING:
    from nats.js import api
    from nats.js.client import JetStreamContext

__all__ = ["RETRYABLE", "election_window", "publish_retrying"]

logger = logging.getLogger("agentcomm.nats")

#: What a publish raises while a stream has no leader (or the connection moves).
RETRYABLE = (
    nats.errors.TimeoutError,
    nats.js.errors.NoStreamResponseError,
    nats.errors.ConnectionReconnectingError,
)

#: Seconds a JetStream call keeps retrying while a stream has no leader (an election
#: takes a few seconds on a 3-node cluster).
ELECTION = 10.0


def election_window(api_timeout: float) -> float:
    """How long a publish or read is retried across a leader change: ``api_timeout``,
    and at least :data:`ELECTION`.

    Example::

        retry_for = election_window(transport.api_timeout)
    """
    return max(api_timeout, ELECTION)


async def publish_retrying(
    js: JetStreamContext,
    subject: str,
    payload: bytes,
    *,
    stream: str,
    headers: dict[str, str],
    timeout: float,
    retry_for: float,
) -> tuple[api.PubAck, bool]:
    """Publish ``payload`` (whose ``headers`` carry a ``Nats-Msg-Id``); retry the same
    message on :data:`RETRYABLE` errors for up to ``retry_for`` seconds.

    Returns the ack and whether it came from a retry (then a ``duplicate`` ack means
    the first attempt was stored). Raises the last error when time runs out.

    Example::

        ack, retried = await publish_retrying(js, "ns.s.EVENTS.x", data, stream="ns_EVENTS",
                                              headers={"Nats-Msg-Id": "m1"}, timeout=5,
                                              retry_for=10)
    """
    assert "Nats-Msg-Id" in headers, "a retried publish needs a message id"
    loop = asyncio.get_running_loop()
    deadline = loop.time() + retry_for
    attempt = 0
    while True:
        attempt += 1
        left = deadline - loop.time()
        try:
            ack = await js.publish(
                subject,
                payload,
                timeout=max(0.05, min(timeout, left)) if attempt > 1 else timeout,
                stream=stream,
                headers=headers,
            )
            if attempt > 1:
                logger.info("publish to %s stored after %d attempts", stream, attempt)
            return ack, attempt > 1
        except RETRYABLE:
            if loop.time() + 0.05 >= deadline:
                raise
            await asyncio.sleep(min(0.05 * 2 ** min(attempt, 5), 1.0))
