"""Streams and buckets of a namespace on NATS: their configurations, who creates them.

With the authorization generated from a policy (``agentcomm policy nats-config``)
agents may not create, update or delete streams and buckets; an admin (or trusted)
user creates them once with :meth:`NatsTransport.setup
<agentcomm.transports.nats.NatsTransport.setup>` (``agentcomm nats setup``). The
transport builds every configuration here, so what the admin creates is exactly
what a runtime would, and a runtime finds nothing to update.

A publish the broker refuses gets no reply: the server sends ``-ERR 'Permissions
Violation ...'`` instead, asynchronously (not even ordered before the answer to a
later PING). So a call that may be refused waits for its reply *or* that error
(:class:`Violations`): a refusal is known within a round trip, not after a timeout.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING, Any, Protocol, cast

import nats.errors
import nats.js.errors
from nats.js import api

from agentcomm.core.errors import ConfigurationError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

    from nats.aio.client import Client
    from nats.aio.msg import Msg

    from agentcomm.core.flow import Retention
    from agentcomm.transports.streams import StreamConfig

__all__ = [
    "NatsAdmin",
    "Refused",
    "Replicas",
    "api_request",
    "events_config",
    "kv_config",
    "setup",
    "setup_hint",
]

logger = logging.getLogger("agentcomm.nats")

#: Seconds an expiry marker stays in a bucket's history (see ``_nats_kv``).
MARKER_TTL = 1.0


class Refused(Exception):
    """The broker refused to let this connection publish ``subject`` (a permission)."""

    def __init__(self, subject: str) -> None:
        super().__init__(f"permissions violation for publish to {subject!r}")
        self.subject = subject


def setup_hint(namespace: str) -> str:
    """What to run when a stream or bucket is missing and this user may not create it.

    Example::

        raise ConfigurationError(f"no stream EVENTS; {setup_hint('prod')}")
    """
    return (
        f"run `agentcomm nats setup --nats URL --namespace {namespace}` once as the admin "
        "(or a trusted) user of the generated NATS config, or call NatsTransport.setup() "
        "connected as that user"
    )


class Violations:
    """The permission violations a connection reports, for the calls that wait on them.

    A publish the broker refuses gets no reply, only an asynchronous ``-ERR``; nats-py
    keeps just the last error. This wraps the client's error callback (the callback
    it had still runs) and resolves the futures of calls that :meth:`expect` a refusal
    of their subject, so such a call knows within a round trip instead of timing out.

    Example::

        refused = violations.expect(subject); ...; violations.forget(refused)
    """

    def __init__(self) -> None:
        self.count = 0
        #: Told the subscription of each slow-consumer drop (core events count them).
        self.slow: Callable[[Any], None] | None = None
        self._waiting: dict[asyncio.Future[bool], str] = {}
        self._wrapped: Any = None
        self._original: Any = None

    def watch(self, nc: Client) -> None:
        """Record what ``nc`` reports from now on (once per client)."""
        if self._wrapped is not None and nc._error_cb is self._wrapped:
            return
        original = nc._error_cb

        async def recording(exc: Exception) -> None:
            self.record(exc)
            await original(exc)

        self._original, self._wrapped = original, recording
        nc._error_cb = recording

    def unwatch(self, nc: Client) -> None:
        """Give ``nc`` its own error callback back (a client the caller owns)."""
        if self._wrapped is not None and nc._error_cb is self._wrapped:
            nc._error_cb = self._original
        self._wrapped = self._original = None

    def record(self, exc: BaseException) -> None:
        if self.slow is not None and isinstance(exc, nats.errors.SlowConsumerError):
            self.slow(exc.sub)
            return
        text = str(exc).lower()
        if "permissions violation" not in text:
            return
        self.count += 1
        for fut, quoted in list(self._waiting.items()):
            if quoted in text and not fut.done():
                fut.set_result(True)

    def expect(self, subject: str) -> asyncio.Future[bool]:
        """A future that resolves when a publish to ``subject`` is refused."""
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting[fut] = f'"{subject.lower()}"'
        return fut

    def forget(self, fut: asyncio.Future[bool]) -> None:
        self._waiting.pop(fut, None)
        fut.cancel()


class _Admin(Protocol):
    """What these functions need of the transport."""

    namespace: str
    api_timeout: float
    _violations: Violations

    @property
    def client(self) -> Client: ...


class _Setup(_Admin, Protocol):
    """What :func:`setup` needs of a transport (``NatsTransport``)."""

    def _kv_names(self, bucket: str) -> tuple[str, str]: ...


async def request_checked(t: _Admin, subject: str, body: bytes) -> Msg:
    """The first reply to a request, or :class:`Refused` as soon as the broker refuses it.

    Example::

        msg = await request_checked(transport, "$JS.API.DIRECT.GET.KV_x", b'{"seq":1}')
    """
    refused = t._violations.expect(subject)
    reply = asyncio.ensure_future(t.client.request(subject, body, timeout=t.api_timeout))
    try:
        await asyncio.wait((reply, refused), return_when=asyncio.FIRST_COMPLETED)
        if refused.done() and not refused.cancelled():
            raise Refused(subject)
        return await reply
    finally:
        t._violations.forget(refused)
        if not reply.done():
            reply.cancel()


async def api_request(t: _Admin, subject: str, body: dict[str, Any]) -> Any:
    """A JetStream API request that raises :class:`Refused` at once when the broker refuses it.

    Raises nats-py's ``APIError`` subclasses for JetStream errors, as its manager does.

    Example::

        resp = await api_request(transport, "$JS.API.STREAM.CREATE.x", cfg.as_dict())
    """
    try:
        msg = await request_checked(t, subject, json.dumps(body).encode())
    except nats.errors.NoRespondersError:
        raise nats.js.errors.ServiceUnavailableError from None
    resp = json.loads(msg.data)
    if "error" in resp:
        raise nats.js.errors.APIError.from_error(resp["error"])
    return resp


async def put_stream(t: _Admin, cfg: api.StreamConfig, *, update: bool) -> api.StreamInfo:
    """Create (or update) a stream; :class:`Refused` when this user may not.

    Example::

        await put_stream(transport, events_config("prod", StreamConfig(name="S")), update=False)
    """
    op = "UPDATE" if update else "CREATE"
    resp = await api_request(t, f"$JS.API.STREAM.{op}.{cfg.name}", cfg.as_dict())
    info: api.StreamInfo = api.StreamInfo.from_response(resp)
    return info


class Replicas:
    """How many copies of each stream and bucket a runtime creates (a cluster keeps 3).

    ``NatsTransport(replicas=3)`` for all of them, or a mapping by stream name
    (``EVENTS``, ``DLQ``, ``TASKS``, ``TASK_UPDATES``) and bucket name
    (``blackboard``, ``presence``, ``tasks``), with ``"*"`` for the rest. Left out
    (``None``), a new stream or bucket gets one copy and an existing one keeps what
    it has; given, the runtime creates it so and updates one that differs (as its
    user may: the generated broker config leaves that to the admin's
    ``agentcomm nats setup --replicas N``).

    Example::

        NatsTransport(urls, namespace="prod", replicas={"*": 3, "presence": 1})
    """

    def __init__(self, default: int | None, by_name: Mapping[str, int]) -> None:
        for name, n in [("*", default), *by_name.items()]:
            if n is not None and (isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 5):
                raise ConfigurationError(
                    f"replicas for {name!r} must be a whole number from 1 to 5 (JetStream's "
                    f"limit; 3 on a 3-node cluster), got {n!r}"
                )
        self.default = default
        self.by_name = dict(by_name)

    @classmethod
    def of(cls, value: int | Mapping[str, int] | None) -> Replicas:
        """The replicas that ``NatsTransport(replicas=value)`` means.

        Example::

            assert Replicas.of(3).get("EVENTS") == 3
        """
        if value is None or isinstance(value, int):
            return cls(value, {})
        by_name = dict(value)
        return cls(by_name.pop("*", None), by_name)

    @property
    def clustered(self) -> bool:
        """True when any stream or bucket is asked to have copies (a cluster).

        Example::

            assert Replicas.of(3).clustered and not Replicas.of(None).clustered
        """
        return any(n > 1 for n in (self.default or 1, *self.by_name.values()))

    def get(self, name: str) -> int | None:
        """The copies of stream or bucket ``name`` (``None``: one when new, else kept).

        Example::

            replicas.get("blackboard")
        """
        return self.by_name.get(name, self.default)


def events_config(
    namespace: str, config: StreamConfig, replicas: int | None = None
) -> api.StreamConfig:
    """The JetStream configuration of the event-log stream ``config.name`` of ``namespace``.

    Example::

        events_config("prod", StreamConfig(name="EVENTS"))
    """
    window = config.duplicate_window
    if config.max_age:
        window = min(window, config.max_age)  # JetStream requires window <= max_age
    return api.StreamConfig(
        name=f"{namespace}_{config.name}",
        subjects=[f"{namespace}.s.{config.name}.>"],
        retention=api.RetentionPolicy.LIMITS,
        discard=api.DiscardPolicy.OLD,
        max_msgs=config.max_msgs,
        max_bytes=config.max_bytes,
        max_age=config.max_age or 0,
        duplicate_window=window,
        storage=api.StorageType.FILE,
        allow_direct=True,
        num_replicas=replicas,
    )


#: The fields of a stream configuration that a runtime sets (and compares).
_MANAGED = (
    "subjects",
    "retention",
    "discard",
    "max_msgs",
    "max_bytes",
    "max_age",
    "duplicate_window",
    "storage",
    "allow_direct",
)


def differs(have: api.StreamConfig, want: api.StreamConfig) -> list[str]:
    """The managed fields where an existing stream's configuration differs from ``want``.

    Example::

        if differs(info.config, events_config(ns, cfg)): ...
    """
    out = []
    for field in _MANAGED:
        a, b = getattr(have, field), getattr(want, field)
        if isinstance(a, float) or isinstance(b, float):
            if abs(float(a or 0) - float(b or 0)) > 1e-6:
                out.append(field)
        elif a != b:
            out.append(field)
    return out


def kv_config(
    namespace: str, bucket: str, history: int, replicas: int | None = None
) -> api.StreamConfig:
    """The JetStream configuration of the KV bucket ``bucket`` of ``namespace``.

    Example::

        kv_config("prod", "blackboard", 16)
    """
    full = f"{namespace}_{bucket}"
    return api.StreamConfig(
        name=f"KV_{full}",
        subjects=[f"$KV.{full}.>"],
        retention=api.RetentionPolicy.LIMITS,
        discard=api.DiscardPolicy.NEW,
        max_msgs_per_subject=history,
        max_msgs=-1,
        max_bytes=-1,
        max_age=0,
        duplicate_window=120.0,
        storage=api.StorageType.FILE,
        allow_rollup_hdrs=True,
        deny_delete=True,
        allow_direct=True,
        allow_msg_ttl=True,
        subject_delete_marker_ttl=MARKER_TTL,
        num_replicas=replicas,
    )


def missing(what: str, namespace: str) -> ConfigurationError:
    """The error of a stream or bucket this user may not create.

    Example::

        raise missing("stream 'EVENTS'", "prod") from None
    """
    return ConfigurationError(
        f"{what} does not exist in namespace {namespace!r} and this NATS user may not "
        f"create it (the broker refused: only the admin creates streams and buckets); "
        f"{setup_hint(namespace)}"
    )


#: The bucket of runtimes' presence records (``agentcomm.presence.BUCKET``).
PRESENCE_BUCKET = "presence"


async def setup(
    t: _Setup,
    *,
    retention: Retention | None = None,
    buckets: Iterable[str | tuple[str, int]] = ("blackboard",),
    history: int = 16,
    replicas: int = 1,
    streams: Iterable[StreamConfig] = (),
) -> list[str]:
    """What :meth:`NatsTransport.setup` does (see there).

    Example::

        lines = await setup(transport, replicas=3)
    """
    import nats.js.errors

    from agentcomm.core.flow import Retention
    from agentcomm.transports.nats.errors import js_error
    from agentcomm.transports.streams import pubsub_streams

    if replicas < 1:
        raise ConfigurationError(f"replicas must be at least 1, got {replicas}")
    if not 1 <= history <= 64:
        raise ConfigurationError(f"history must be between 1 and 64, got {history}")
    nc, ns, timeout = t.client, t.namespace, t.api_timeout
    configs = [*pubsub_streams(retention or Retention()), *streams]
    wanted = [events_config(ns, c, replicas) for c in configs]
    pairs = [(b, history) if isinstance(b, str) else b for b in buckets]
    kv = [*dict(pairs).items(), (PRESENCE_BUCKET, 1)]
    for bucket, _ in kv:
        t._kv_names(bucket)  # validates the name
    lines: list[str] = []
    js = nc.jetstream(timeout=timeout)
    for cfg, kind in [(c, "stream") for c in wanted] + [
        (kv_config(ns, b, h, replicas), "bucket") for b, h in kv
    ]:
        name = str(cfg.name)
        try:
            try:
                have = await js.stream_info(name)
            except nats.js.errors.NotFoundError:
                await put_stream(t, cfg, update=False)
                lines.append(f"created {kind} {name}")
                continue
            if kind == "bucket":  # its data and history stay as they are
                lines.append(f"{kind} {name} exists (kept)")
                continue
            changed = differs(have.config, cfg)
            if have.config.num_replicas != replicas:
                changed.append("num_replicas")
            if not changed:
                lines.append(f"{kind} {name} is up to date")
                continue
            update = have.config.evolve(**{f: getattr(cfg, f) for f in changed})
            await put_stream(t, update, update=True)
            lines.append(f"updated {kind} {name} ({', '.join(changed)})")
        except Refused:
            raise ConfigurationError(
                f"this NATS user may not create or update {kind} {name}: connect as the "
                "admin (or a trusted) user of the generated NATS config "
                "(`agentcomm policy nats-config --admin NAME`)"
            ) from None
        except (nats.errors.Error, OSError) as exc:
            raise js_error(exc, f"setting up {kind} {name}") from exc
    return lines


class NatsAdmin:
    """The operator's half of the NATS transport (mixed into NatsTransport)."""

    async def setup(
        self,
        *,
        retention: Retention | None = None,
        buckets: Iterable[str | tuple[str, int]] = ("blackboard",),
        history: int = 16,
        replicas: int = 1,
        streams: Iterable[StreamConfig] = (),
    ) -> list[str]:
        """Create (or update) the namespace's streams and buckets; what an admin runs once.

        The event log and dead-letter queue of pub/sub (``retention``), the blackboard
        ``buckets`` (``history`` changes kept per key, or a ``(name, history)`` pair;
        an existing bucket is kept as it is), the presence bucket and any other
        ``streams`` (``agentcomm nats setup`` adds the durable tasks' two streams and
        bucket), each with ``replicas`` copies. Connect as the admin
        (or a trusted) user of the generated NATS config: agents may not create them
        (``agentcomm nats setup`` runs this). Returns one line per stream or bucket.

        Example::

            t = NatsTransport("nats://admin:pw@broker:4222", namespace="prod")
            await t.start()
            try:
                for line in await t.setup(replicas=3): print(line)
            finally:
                await t.close()
        """
        return await setup(
            cast("_Setup", self),
            retention=retention,
            buckets=buckets,
            history=history,
            replicas=replicas,
            streams=streams,
        )
