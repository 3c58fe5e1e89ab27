"""Request/reply on core NATS with one reply subscription per connection.

nats-py's ``request`` does the same with more per call: a NUID and random bytes
for each token, byte-array copies, a done callback and ``asyncio.wait_for`` (a
timer and a wrapper per request). Here a token is a counter, the subject one
f-string and the timeout one timer handle, which is what the direct messages'
hot path needs (``bench/nats.py``: request/reply with 64 in flight).

Subjects: ``<inbox>.rp.<connection id>.<token>``, under the connection's inbox
prefix (what its NATS user may subscribe to); the server answers a request to a
subject nobody subscribes to with a ``503`` status message there, which becomes
``nats.errors.NoRespondersError`` as in nats-py.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from typing import TYPE_CHECKING

import nats.errors

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.aio.msg import Msg
    from nats.aio.subscription import Subscription

__all__ = ["Replies"]

_STATUS = "Status"
_NO_RESPONDERS = "503"


def _expire(fut: asyncio.Future[Msg]) -> None:
    if not fut.done():
        fut.set_exception(nats.errors.TimeoutError())


class Replies:
    """The reply subscription of one connection, and the requests waiting on it.

    Example::

        replies = Replies(nc)
        msg = await replies.request("svc.echo", b"{}", timeout=2.0)
        await replies.close()
    """

    __slots__ = ("_closed", "_loop", "_nc", "_pending", "_prefix", "_started", "_sub", "_tokens")

    def __init__(self, nc: Client) -> None:
        self._nc = nc
        inbox = bytes(nc._inbox_prefix).decode()
        self._prefix = f"{inbox}.rp.{os.urandom(5).hex()}."
        self._pending: dict[str, asyncio.Future[Msg]] = {}
        self._tokens = itertools.count(1)
        self._sub: Subscription | None = None
        self._started: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    async def _start(self) -> None:
        started = self._started
        if started is None:  # the first request subscribes; the ones meanwhile wait
            loop = self._loop = asyncio.get_running_loop()
            started = self._started = loop.create_future()
            try:
                self._sub = await self._nc.subscribe(f"{self._prefix}*", cb=self._on_reply)
            except BaseException as exc:
                self._started = None
                started.set_exception(exc)
                started.exception()  # retrieved: the waiters re-raise it themselves
                raise
            started.set_result(None)
            return
        await started

    async def _on_reply(self, msg: Msg) -> None:
        fut = self._pending.pop(msg.subject[len(self._prefix) :], None)
        if fut is not None and not fut.done():
            fut.set_result(msg)

    async def request(self, subject: str, data: bytes, timeout: float) -> Msg:
        """Publish ``data`` to ``subject`` and wait at most ``timeout`` s for its reply.

        Raises what nats-py's ``request`` raises: ``NoRespondersError``,
        ``TimeoutError`` and the connection's errors.

        Example::

            msg = await replies.request("svc.echo", b"{}", timeout=2.0)
        """
        if self._sub is None:
            if self._closed:
                raise nats.errors.ConnectionClosedError
            await self._start()
        loop = self._loop
        assert loop is not None
        token = f"{next(self._tokens):x}"
        fut: asyncio.Future[Msg] = loop.create_future()
        pending = self._pending
        pending[token] = fut
        try:
            await self._nc.publish(subject, data, reply=self._prefix + token)
            timer = loop.call_later(timeout, _expire, fut)
            try:
                msg = await fut
            finally:
                timer.cancel()
        finally:
            pending.pop(token, None)
        headers = msg.headers
        if headers and headers.get(_STATUS) == _NO_RESPONDERS:
            raise nats.errors.NoRespondersError
        return msg

    async def close(self) -> None:
        """Unsubscribe; requests still waiting fail with a closed connection.

        Example::

            await replies.close()
        """
        self._closed = True  # a request after this fails instead of subscribing again
        sub, self._sub, self._started = self._sub, None, None
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(nats.errors.ConnectionClosedError())
        self._pending.clear()
        if sub is not None:
            try:
                await sub.unsubscribe()
            except (nats.errors.Error, OSError):
                pass
