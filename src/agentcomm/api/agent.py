"""The public Agent: the host's agent plus the verbs of every pattern.

:class:`agentcomm.host.agent.Agent` owns the name, the handlers, the mailbox and the
workers. This class composes the patterns on top of it: ``send`` and ``request``
(direct messages, through the runtime's ``requests`` service), ``on`` and
``publish`` (pub/sub), ``board`` (the blackboard).

Example::

    from agentcomm import Agent, Runtime

    calc = Agent("calc")

    @calc.handler
    async def add(a: int, b: int) -> int:
        "Add two integers."
        return a + b

    async with Runtime(agents=[calc]) as rt:
        client = rt.agent("client")
        assert await client.request("calc", "add", {"a": 1, "b": 2}) == 3
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar, cast, overload

from agentcomm.api.context import Context
from agentcomm.blackboard.board import Blackboard
from agentcomm.core.progress import DEFAULT_WINDOW
from agentcomm.host.agent import Agent as _HostAgent
from agentcomm.host.runtime import requests_of, runtime_of
from agentcomm.pubsub.bus import PubSub
from agentcomm.pubsub.declare import HANDLER_TIMEOUT, declare_subscription
from agentcomm.tasks.declare import OnLost, declare_task
from agentcomm.tasks.service import Tasks
from agentcomm.tools.declare import Completer, declare_prompt, declare_resource

if TYPE_CHECKING:
    from agentcomm.core.envelope import Envelope
    from agentcomm.core.flow import RetryPolicy
    from agentcomm.direct.messaging import DirectMessages
    from agentcomm.direct.streams import ProgressCallback, Stream
    from agentcomm.host.context import Context as _HostContext
    from agentcomm.host.runtime import Requests
    from agentcomm.pubsub.declare import Start
    from agentcomm.tasks.handle import TaskHandle

__all__ = ["Agent"]

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")


class Agent(_HostAgent):
    """A named agent. Declare handlers with :meth:`handler`; talk with :meth:`request`.

    ``concurrency`` handlers of this agent run at once; ``mailbox_size`` bounds the
    messages waiting for them (senders wait or get :class:`MailboxFull`).

    Example::

        bob = Agent("bob", concurrency=4, mailbox_size=256)

        @bob.handler
        async def greet(name: str) -> str:
            "Say hello."
            return f"hello {name}"
    """

    context_class: ClassVar[type[_HostContext]] = Context
    #: (runtime, its pub/sub) of the last publish: one lookup per runtime, not per event.
    _bus: tuple[object, PubSub] | None = None

    #: (runtime, its direct messaging) of the last call: one lookup per runtime.
    _direct: tuple[object, Requests] | None = None

    def _requests(self) -> Requests:
        rt = self._runtime
        direct = self._direct
        if direct is not None and rt is not None and direct[0] is rt:
            return direct[1]
        host = rt if rt is not None else self.runtime  # runtime: TransportClosed
        service = requests_of(host)
        self._direct = (host, service)
        return service

    # -- direct messages (agentcomm.direct) ---------------------------------------------
    async def send(
        self,
        to: str,
        handler: str,
        payload: Any = None,
        *,
        block: bool = True,
        timeout: float | None = None,
        ttl: float | None = None,
        headers: dict[str, str] | None = None,
        cause: Envelope | None = None,
    ) -> None:
        """Fire-and-forget notification to ``to``'s ``handler``.

        Raises :class:`NoResponders` at once if ``to`` is absent. With a full mailbox
        it waits for room, for at most ``timeout`` seconds (then :class:`MailboxFull`),
        or, with ``block=False``, raises :class:`MailboxFull` at once. ``ttl`` gives
        the notification a deadline: the receiver skips it, or stops its handler,
        once ``ttl`` seconds have passed.

        Example::

            await alice.send("bob", "note", {"text": "build finished"}, timeout=5, ttl=60)
        """
        await self._requests().send(
            self,
            to,
            handler,
            payload,
            block=block,
            timeout=timeout,
            ttl=ttl,
            headers=headers,
            cause=cause,
        )

    @overload
    def request(
        self,
        to: str,
        handler: str,
        payload: Any = None,
        *,
        timeout: float | None = None,
        returns: None = None,
        headers: dict[str, str] | None = None,
        cause: Envelope | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> Coroutine[Any, Any, Any]: ...

    @overload
    def request(
        self,
        to: str,
        handler: str,
        payload: Any = None,
        *,
        timeout: float | None = None,
        returns: type[T],
        headers: dict[str, str] | None = None,
        cause: Envelope | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> Coroutine[Any, Any, T]: ...

    def request(
        self,
        to: str,
        handler: str,
        payload: Any = None,
        *,
        timeout: float | None = None,
        returns: Any = None,
        headers: dict[str, str] | None = None,
        cause: Envelope | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> Coroutine[Any, Any, Any]:
        """Call ``to``'s ``handler`` and return its answer (decoded as ``returns`` if given).

        Raises :class:`NoResponders` at once when ``to`` is absent,
        :class:`RequestTimeout` after ``timeout`` seconds (default: the runtime's),
        :class:`ValidationError` when the payload breaks the handler's schema, and
        :class:`RemoteError` when the handler raised. ``on_progress(Progress)`` sees
        the handler's ``ctx.progress(...)`` reports; cancelling the calling task
        cancels the handler. (A plain method returning the coroutine, one frame less
        on the hot path: await it.)

        Example::

            total = await alice.request("calc", "add", {"a": 1, "b": 2}, returns=int)
        """
        direct = self._direct  # _requests(), inlined: every request's hot path
        if direct is None or direct[0] is not self._runtime or self._runtime is None:
            direct = (None, self._requests())
        return direct[1].request(
            self,
            to,
            handler,
            payload,
            timeout=timeout,
            returns=returns,
            headers=headers,
            cause=cause,
            on_progress=on_progress,
        )

    async def stream(
        self,
        to: str,
        handler: str,
        payload: Any = None,
        *,
        timeout: float | None = None,
        returns: Any = None,
        window: int = DEFAULT_WINDOW,
        on_progress: ProgressCallback | None = None,
        headers: dict[str, str] | None = None,
        cause: Envelope | None = None,
    ) -> Stream[Any]:
        """Open ``to``'s stream handler (an async generator); iterate what it yields.

        ``timeout`` bounds the whole stream (default: the runtime's); ``window``
        chunks are buffered at most (the producer waits for room). Leaving the loop
        early, or cancelling the task, cancels the handler. Raises
        :class:`NoResponders` at once when ``to`` is absent.

        Example::

            async for part in await alice.stream("writer", "draft", {"topic": "tea"}):
                print(part)
        """
        direct = cast("DirectMessages", self._requests())
        return await direct.stream(
            self,
            to,
            handler,
            payload,
            timeout=timeout,
            returns=returns,
            window=window,
            on_progress=on_progress,
            headers=headers,
            cause=cause,
        )

    # -- MCP prompts and resources (agentcomm.tools) -----------------------------------
    @overload
    def prompt(self, fn: F, /) -> F: ...

    @overload
    def prompt(
        self,
        *,
        name: str | None = None,
        title: str | None = None,
        complete: dict[str, Completer] | None = None,
    ) -> Callable[[F], F]: ...

    def prompt(  # type: ignore[misc]  # mypy rejects F only in the return
        self,
        fn: Any = None,
        /,
        *,
        name: str | None = None,
        title: str | None = None,
        complete: dict[str, Completer] | None = None,
    ) -> Any:
        """Declare a prompt template served over MCP (``prompts/list``, ``prompts/get``).

        Its typed arguments are the prompt's arguments (MCP's strings are converted);
        it returns a ``str`` (one user message), a :class:`Message` or a list of
        them. ``complete`` maps an argument to suggestions (a list, or
        ``fn(prefix)``) for ``completion/complete``.

        Example::

            @agent.prompt(complete={"style": ["terse", "friendly"]})
            def summarise(text: str, style: str = "terse") -> str:
                "Summarise a text."
                return f"Summarise in a {style} style:\\n{text}"
        """
        return declare_prompt(self, fn, name=name, title=title, complete=complete)

    def resource(
        self,
        uri: str,
        *,
        name: str | None = None,
        title: str | None = None,
        mime_type: str | None = None,
        complete: dict[str, Completer] | None = None,
    ) -> Callable[[F], F]:
        """Declare an MCP resource (or a template, with ``{variables}`` in ``uri``).

        The function's arguments are the template's variables; it returns ``str``
        (text), ``bytes`` (a blob), a :class:`Resource` or any JSON value.

        Example::

            @agent.resource("orders://{order_id}", mime_type="application/json")
            async def order(order_id: int) -> dict[str, int]:
                return {"id": order_id}
        """
        return declare_resource(
            self, uri, name=name, title=title, mime_type=mime_type, complete=complete
        )

    # -- durable tasks (agentcomm.tasks) ----------------------------------------------
    def task_handler(
        self, *, name: str | None = None, on_lost: OnLost = "retry", max_attempts: int = 3
    ) -> Callable[[F], F]:
        """Declare a durable task handler (a coroutine, or an async generator of artifacts).

        Callers start it with :meth:`start_task`. Inside, ``ctx.progress(...)`` reports
        progress, ``await ctx.ask(question, returns=T)`` waits for the caller's answer
        and ``ctx.attempt`` numbers the runs. When the worker running it dies, the
        task is re-run by another instance of this agent (``on_lost="retry"``, at most
        ``max_attempts`` runs) or failed (``on_lost="fail"``). Task handlers are not
        request handlers: ``request()`` to one is UnknownHandler.

        Example::

            @researcher.task_handler(on_lost="retry", max_attempts=3)
            async def survey(topic: str, ctx: Context) -> str:
                await ctx.progress(1, 2, "searching")
                ok = await ctx.ask(f"Include paid sources on {topic}?", returns=bool)
                return f"report on {topic} (paid: {ok})"
        """
        return declare_task(self, name=name, on_lost=on_lost, max_attempts=max_attempts)

    async def start_task(
        self, to: str, handler: str, payload: Any = None, *, returns: Any = None
    ) -> TaskHandle[Any]:
        """Start ``to``'s task handler ``handler`` and return its handle at once.

        The task is stored durably (in memory, or in JetStream on NATS) and runs on
        one instance of ``to`` when one is up; ``returns`` types
        ``handle.result()``. Use ``handle.id`` to re-attach later (:meth:`task`).

        Example::

            handle = await client.start_task("researcher", "survey", {"topic": "tea"})
            print(handle.id, (await handle.status()).state)
        """
        return await Tasks.of(runtime_of(self)).start_task(
            self.name, to, handler, payload, returns=returns
        )

    def task(self, task_id: str, *, returns: Any = None) -> TaskHandle[Any]:
        """A handle on an existing task, from any process (its methods raise UnknownTask
        for an id that is not stored).

        Example::

            handle = client.task(saved_id)
            async for u in handle.updates(since=saved_cursor): ...
        """
        return Tasks.of(runtime_of(self)).handle(self.name, task_id, returns)

    # -- the blackboard (agentcomm.blackboard) ------------------------------------------
    @property
    def board(self) -> Blackboard:
        """The runtime's blackboard, writing (and authorized) as this agent.

        Example::

            await researcher.board.write("research.q1", {"findings": []})
        """
        return Blackboard(runtime_of(self), author=self.name)

    # -- pub/sub (see agentcomm.pubsub) ------------------------------------------------
    def on(
        self,
        topic: str,
        *,
        name: str | None = None,
        group: str | None = None,
        retry: RetryPolicy | None = None,
        start: Start = "new",
        concurrency: int = 1,
        max_in_flight: int = 256,
        handler_timeout: float | None = HANDLER_TIMEOUT,
        ordered: bool = False,
        durable: bool = True,
    ) -> Callable[[F], F]:
        """Subscribe a handler to the events whose topic matches ``topic``.

        ``topic`` may use ``*`` and ``>`` (an invalid pattern raises ConfigurationError
        here); the handler is typed like a direct handler (may take ``ctx: Context``).
        The options (``group``, ``retry``, ``start``, ``concurrency``, ``max_in_flight``,
        ``handler_timeout``, ``ordered``) are described at
        :func:`~agentcomm.pubsub.declare.declare_subscription`. ``durable=False``
        receives core events (``publish(..., durable=False)``): no log, at most once,
        the oldest dropped past ``max_in_flight`` waiting (docs/pubsub.md).

        Example::

            @billing.on("orders.*", retry=RetryPolicy(max_attempts=3), concurrency=4)
            async def charge(order: Order, ctx: Context) -> None: ...

            @dashboard.on("metrics.>", durable=False)
            async def show(value: float, ctx: Context) -> None: ...
        """
        return declare_subscription(
            self,
            topic,
            name=name,
            group=group,
            retry=retry,
            start=start,
            concurrency=concurrency,
            max_in_flight=max_in_flight,
            handler_timeout=handler_timeout,
            ordered=ordered,
            durable=durable,
        )

    def publish(
        self,
        topic: str,
        payload: Any = None,
        *,
        key: str | None = None,
        msg_id: str | None = None,
        ttl: float | None = None,
        wait: bool = True,
        headers: dict[str, str] | None = None,
        cause: Envelope | None = None,
        durable: bool = True,
    ) -> Coroutine[Any, Any, int]:
        """Publish an event to ``topic``; return its sequence number in the event log.

        ``key`` orders events (same key, handled in order); ``msg_id`` dedupes (the
        same id within the dedupe window is stored once); ``ttl`` seconds after which
        an unhandled event is dead-lettered as expired; ``wait=False`` raises
        RateLimited instead of waiting when a rate limit is hit. ``durable=False``
        sends a core event: to the ``durable=False`` subscriptions listening now, at
        most once, stored nowhere (no ``msg_id``); it returns 0.

        Example::

            seq = await shop.publish("orders.created", {"id": "o-1"}, key="customer-7")
            await probe.publish("metrics.cpu", {"value": 0.42}, durable=False)
        """
        # (A plain method returning the coroutine, and the bus looked up once per
        # runtime: this is every event's hot path.)
        bus = self._bus
        if bus is None or bus[0] is not self._runtime:
            rt = runtime_of(self)  # TransportClosed when not attached
            bus = self._bus = (rt, PubSub.of(rt))
        return bus[1].publish(
            self.name,
            topic,
            payload,
            key=key,
            msg_id=msg_id,
            ttl=ttl,
            wait=wait,
            headers=headers,
            cause=cause,
            durable=durable,
        )
