"""Names that travel on the wire: agents, handlers and per-agent NATS reply inboxes.

Example::

    check_name("agent", "billing")  # returns "billing"; raises ConfigurationError if invalid
"""

from __future__ import annotations

import re

from agentcomm.core.errors import ConfigurationError

__all__ = ["NAME_RE", "check_name", "nats_inbox_prefix"]

NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,127}$")


def check_name(kind: str, name: str) -> str:
    """Validate an agent or handler name: letters, digits, ``_`` and ``-``, 1-128 chars.

    Example::

        check_name("handler", "lookup_customer")
    """
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ConfigurationError(
            f"invalid {kind} name {name!r}: use 1-128 letters, digits, '_' or '-' "
            "(no dots, spaces or wildcards, so the name maps onto a NATS subject token)"
        )
    return name


def nats_inbox_prefix(agent: str, *, namespace: str = "agentcomm") -> str:
    """The reply-inbox prefix of ``agent``'s NATS connection: ``_INBOX.<namespace>.<agent>``.

    The generated server config lets each agent's user subscribe only below its own
    prefix, so it cannot read replies meant for another agent. :class:`NatsTransport`
    uses it when its URL names a user (``nats://alice:pw@host``); a client you connect
    yourself needs it too.

    Example::

        nc = await nats.connect(url, user_credentials="alice.creds",
                                inbox_prefix=nats_inbox_prefix("alice", namespace="prod"))
    """
    return f"_INBOX.{namespace}.{agent}"
