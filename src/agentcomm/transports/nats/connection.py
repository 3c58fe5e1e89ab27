"""Connecting to NATS: one server or a cluster's URLs, reconnecting forever.

Split from :mod:`.transport`. ``NatsTransport("nats://a:4222,nats://b:4222")`` (or a
list of URLs) hands every URL to nats-py, which picks one, learns the rest of the
cluster from the server (``connect_urls``) and, when its server goes away, reconnects
to another with no action from the user; subscriptions and JetStream consumers carry
on. The credentials of the first URL apply to all.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from urllib.parse import unquote, urlsplit

import nats.errors
from nats.aio.client import Client

from agentcomm.core.errors import ConfigurationError, TransportError
from agentcomm.transports.nats.errors import nats_error

__all__ = ["connect", "quiet_close", "server_urls", "url_user"]

logger = logging.getLogger("agentcomm.nats")


def server_urls(urls: str | Sequence[str]) -> list[str]:
    """The server URLs of ``urls``: one URL, several separated by commas, or a list.

    Raises :class:`ConfigurationError` for an empty list or a URL that is not
    ``nats://``, ``tls://``, ``ws://`` or ``wss://`` (``host:port`` means ``nats://``).

    Example::

        assert server_urls("nats://a:4222, nats://b:4222") == ["nats://a:4222", "nats://b:4222"]
    """
    items = urls.split(",") if isinstance(urls, str) else list(urls)
    out = []
    for item in items:
        url = item.strip()
        if not url:
            continue
        if "://" not in url:
            host, _, bare_port = url.rpartition(":")
            if not (host and bare_port.isdigit()):  # a bare word is a typo, not a host
                raise ConfigurationError(
                    f"invalid NATS URL {url!r}: use nats://HOST:PORT (or HOST:PORT)"
                )
            url = "nats://" + url
        try:
            parts = urlsplit(url)
            _ = parts.port  # a port that is not a number raises here
        except ValueError as exc:
            raise ConfigurationError(f"invalid NATS URL {item.strip()!r}: {exc}") from None
        if parts.scheme not in ("nats", "tls", "ws", "wss") or not parts.hostname:
            raise ConfigurationError(
                f"invalid NATS URL {item.strip()!r}: use nats://HOST:PORT (or tls://, ws://)"
            )
        out.append(url)
    if not out:
        raise ConfigurationError("no NATS server URL given; pass nats://HOST:PORT")
    return out


def url_user(url: str) -> str | None:
    """The user named in the first server URL (``nats://alice:pw@host`` gives ``alice``).

    Example::

        assert url_user("nats://alice:pw@broker:4222") == "alice"
    """
    first = url.split(",", 1)[0].strip()
    try:
        user = urlsplit(first if "://" in first else "nats://" + first).username
    except ValueError:
        return None
    return unquote(user) if user else None


async def connect(
    servers: list[str],
    *,
    connect_timeout: float,
    inbox_prefix: str | None,
    on_disconnect: Callable[[], Awaitable[None]],
    on_reconnect: Callable[[], Awaitable[None]],
) -> Client:
    """A connected nats-py client for ``servers`` (reconnecting forever, short waits).

    Example::

        nc = await connect(["nats://127.0.0.1:4222"], connect_timeout=5, inbox_prefix=None,
                           on_disconnect=noop, on_reconnect=noop)
    """
    nc = Client()
    where = ", ".join(servers)

    async def on_error(exc: Exception) -> None:
        logger.debug("NATS error on %s: %s", where, exc)

    try:
        async with asyncio.timeout(connect_timeout):
            await nc.connect(
                servers,
                name="agentcomm",
                error_cb=on_error,
                disconnected_cb=on_disconnect,
                reconnected_cb=on_reconnect,
                allow_reconnect=True,
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.25,  # type: ignore[arg-type]  # int in the stubs
                connect_timeout=max(1, int(connect_timeout)),
                inbox_prefix=inbox_prefix or "_INBOX",  # nats-py's default
            )
    except TimeoutError:
        await quiet_close(nc)
        raise TransportError(
            f"could not connect to NATS at {where} within {connect_timeout:g}s; "
            "is nats-server running there (with -js for the blackboard and pub/sub)?"
        ) from None
    except (nats.errors.Error, OSError) as exc:
        await quiet_close(nc)
        raise nats_error(exc, f"connecting to {where}") from exc
    return nc


async def quiet_close(nc: Client) -> None:
    """Close ``nc``, logging (never raising) a failure; at most 5 s.

    Example::

        await quiet_close(nc)
    """
    try:
        async with asyncio.timeout(5):
            await nc.close()
    except (nats.errors.Error, OSError, TimeoutError) as exc:
        logger.debug("closing the NATS connection failed: %s", exc)
