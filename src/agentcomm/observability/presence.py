"""Presence: who is connected on NATS, what they offer, and how they are doing.

Every runtime on NATS announces its agents in the JetStream KV bucket ``presence``
(stream ``KV_<ns>_presence``): one key per agent instance,
``agents.<agent>.<instance>`` (:class:`AgentPresence`: handlers with their schemas,
subscriptions, pid, host, start time, the agent's statistics) and one per runtime,
``runtimes.<instance>`` (:class:`RuntimePresence`: pub/sub and blackboard
statistics). Records are rewritten every ``interval`` seconds with a TTL of three
intervals, so a process that dies disappears on its own; a clean shutdown deletes
them at once. ``agentcomm agents``, ``agentcomm tools`` and ``agentcomm stats`` read
them. Off on the in-memory transport; presence never blocks or fails the runtime
(a broker that refuses the writes gets a logged warning, and every failed round
is counted in ``rt.statistics().errors["presence"]``).

Example::

    Presence.install(rt, interval=1.0)          # before `async with rt`; or enabled=False
    async with rt:
        ...
    records = await read_presence(transport)   # from any process on the same namespace
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from typing import TYPE_CHECKING, Any

import msgspec

from agentcomm.blackboard.core import BoardStatistics
from agentcomm.core.envelope import decode_guarded
from agentcomm.core.errors import AgentCommError, ConfigurationError, DecodeError
from agentcomm.core.rejects import Rejects
from agentcomm.host.agent import AgentStatistics
from agentcomm.host.failures import FailureRecord
from agentcomm.observability.sources import board_statistics, pubsub_statistics
from agentcomm.pubsub.metrics import PubSubStatistics, SubscriptionStatistics
from agentcomm.tools.catalogue import Tools
from agentcomm.tools.schemas import ToolInfo

if TYPE_CHECKING:
    from agentcomm.host.runtime import Runtime
    from agentcomm.transports.base import Transport

__all__ = ["BUCKET", "AgentPresence", "Presence", "RuntimePresence", "read_presence"]

logger = logging.getLogger("agentcomm.presence")

#: The KV bucket presence records live in (``KV_<namespace>_presence`` on NATS).
BUCKET = "presence"


class AgentPresence(msgspec.Struct, frozen=True, kw_only=True):
    """One agent instance on the bus, as announced by its runtime.

    Example::

        for rec in (await read_presence(transport))[0]:
            print(rec.agent, rec.host, rec.pid, [t.handler for t in rec.tools])
    """

    agent: str
    instance: str
    host: str
    pid: int
    started: float
    updated: float
    tools: tuple[ToolInfo, ...]
    subscriptions: tuple[SubscriptionStatistics, ...]
    statistics: AgentStatistics
    received_rate: float = 0.0  # envelopes per second since the previous record
    handled_rate: float = 0.0


class RuntimePresence(msgspec.Struct, frozen=True, kw_only=True):
    """One runtime on the bus: its agents and its pub/sub and blackboard statistics.

    Example::

        for rt in (await read_presence(transport))[1]:
            print(rt.instance, rt.agents, rt.pubsub and rt.pubsub.published)
    """

    instance: str
    host: str
    pid: int
    started: float
    updated: float
    interval: float
    agents: tuple[str, ...]
    failures: int
    pubsub: PubSubStatistics | None = None
    boards: tuple[BoardStatistics, ...] = ()
    #: Refused frames by kind (``rt.statistics().rejected_frames``).
    rejected_frames: dict[str, int] = msgspec.field(default_factory=dict)
    #: Failures by kind, background work's included (``rt.statistics().errors``).
    errors: dict[str, FailureRecord] = msgspec.field(default_factory=dict)


#: Topics (the busiest) and subscriptions (the most behind) a runtime record carries:
#: a record is one NATS message, and 10,000 topics would not fit in 1 MiB.
MAX_TOPICS = 256

_agent_decoder = msgspec.json.Decoder(AgentPresence)
_runtime_decoder = msgspec.json.Decoder(RuntimePresence)


class Presence:
    """A runtime's presence announcer (the runtime starts it on NATS transports).

    Example::

        Presence.install(rt, interval=2.0)   # before the runtime starts
    """

    def __init__(self, rt: Runtime, *, interval: float = 5.0, enabled: bool = True) -> None:
        if interval <= 0:
            raise ConfigurationError("presence interval must be positive seconds")
        self.runtime = rt
        self.interval = interval
        self.enabled = enabled
        self.instance = uuid.uuid4().hex[:12]
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.started = time.time()
        self._task: asyncio.Task[None] | None = None
        self._keys: set[str] = set()
        self._tools: dict[str, tuple[int, tuple[ToolInfo, ...]]] = {}
        self._failing = False
        self._closing = False
        self._last: dict[str, tuple[float, int, int]] = {}  # agent -> (time, received, handled)
        self.published = 0  # successful rounds

    @classmethod
    def install(cls, rt: Runtime, **options: Any) -> Presence:
        """Configure the runtime's presence (``interval``, ``enabled``) before it starts.

        Example::

            Presence.install(rt, enabled=False)
        """
        if rt.existing_extension("presence") is not None:
            raise ConfigurationError("this runtime's presence exists; install it before start")
        p: Presence = rt.extension("presence", lambda r: cls(r, **options))
        return p

    def start(self) -> None:
        """Start announcing in the runtime's task group (no round trip here)."""
        if self.enabled and self._task is None:
            self._task = self.runtime.task_group.create_task(self._run(), name="agentcomm:presence")

    async def _run(self) -> None:
        t = self.runtime.transport
        opened = False
        while not self._closing:
            try:
                if not opened:
                    await t.kv_open(BUCKET, history=1)
                    opened = True
                await self.publish()
                if self._failing:
                    logger.info("presence: announcing again")
                self._failing = False
            except Exception as exc:  # presence must never fail the runtime
                self.runtime.report_error("presence", exc, subject=BUCKET)
                if not self._failing:
                    logger.warning(
                        "presence: cannot announce agents (%s); retrying",
                        exc,
                        exc_info=not isinstance(exc, AgentCommError),
                    )
                self._failing = True
            if self._closing:  # nats-py may turn our cancellation into a timeout
                return
            await asyncio.sleep(self.interval)

    def _tool_infos(self, name: str) -> tuple[ToolInfo, ...]:
        agent = self.runtime.get_agent(name)
        if agent is None:
            return ()
        version = len(agent.handlers)
        cached = self._tools.get(name)
        if cached is None or cached[0] != version:
            infos = tuple(Tools.of(self.runtime).agent_catalogue(name))
            cached = self._tools[name] = (version, infos)
        return cached[1]

    async def publish(self) -> None:
        """Write every record now (the loop does it every ``interval``).

        Example::

            await rt.extension("presence", Presence).publish()
        """
        rt = self.runtime
        t = rt.transport
        now = time.time()
        ttl = max(self.interval * 3, t.min_ttl, 1.0)
        stats = rt.statistics()
        pubsub = pubsub_statistics(rt)
        boards = board_statistics(rt)
        keys: set[str] = set()
        last: dict[str, tuple[float, int, int]] = {}
        by_agent: dict[str, list[Any]] = {}  # one pass, not one per agent
        for s in pubsub.subscriptions if pubsub else ():
            by_agent.setdefault(s.agent, []).append(s)
        for a in stats.agents:
            t0, r0, h0 = self._last.get(a.name, (self.started, 0, 0))
            dt = max(now - t0, 1e-3)
            last[a.name] = (now, a.received, a.handled)
            subs = tuple(by_agent.get(a.name, ()))
            rec = AgentPresence(
                agent=a.name,
                instance=self.instance,
                host=self.host,
                pid=self.pid,
                started=self.started,
                updated=now,
                tools=self._tool_infos(a.name),
                subscriptions=subs,
                statistics=a,
                received_rate=max(a.received - r0, 0) / dt,
                handled_rate=max(a.handled - h0, 0) / dt,
            )
            key = f"agents.{a.name}.{self.instance}"
            await t.kv_put(BUCKET, key, msgspec.json.encode(rec), ttl=ttl)
            keys.add(key)
        if pubsub is not None and (
            len(pubsub.topics) > MAX_TOPICS or len(pubsub.subscriptions) > MAX_TOPICS
        ):  # a record is one NATS message (1 MiB at most): the busiest topics only
            busiest = sorted(pubsub.topics, key=lambda tp: -tp.published)[:MAX_TOPICS]
            laggiest = sorted(pubsub.subscriptions, key=lambda s: -s.lag)[:MAX_TOPICS]
            pubsub = msgspec.structs.replace(
                pubsub, topics=tuple(busiest), subscriptions=tuple(laggiest)
            )
        if stats.agents:
            rrec = RuntimePresence(
                instance=self.instance,
                host=self.host,
                pid=self.pid,
                started=self.started,
                updated=now,
                interval=self.interval,
                agents=tuple(a.name for a in stats.agents),
                failures=stats.failures,
                pubsub=pubsub,
                boards=tuple(boards),
                rejected_frames=stats.rejected_frames,
                errors=stats.errors,
            )
            key = f"runtimes.{self.instance}"
            await t.kv_put(BUCKET, key, msgspec.json.encode(rrec), ttl=ttl)
            keys.add(key)
        for gone in self._keys - keys:  # detached agents leave at once
            await t.kv_delete(BUCKET, gone)
        self._keys = keys
        self._last = last
        self.published += 1

    async def aclose(self) -> None:
        """Stop announcing and remove this runtime's records (called at shutdown)."""
        self._closing = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        keys, self._keys = self._keys, set()
        if not keys:
            return
        try:
            async with asyncio.timeout(2.0):
                for key in keys:
                    await self.runtime.transport.kv_delete(BUCKET, key)
        except (AgentCommError, TimeoutError) as exc:
            logger.info("presence: records not removed (%s); they expire on their own", exc)


async def read_presence(
    transport: Transport,
) -> tuple[list[AgentPresence], list[RuntimePresence]]:
    """Every live agent and runtime record on ``transport``'s namespace (sorted).

    Records that do not decode (another version, or hostile bytes) are skipped and
    counted in the transport's ``rejected_frames`` (``presence``). Raises
    :class:`~agentcomm.errors.ConfigurationError` when no runtime ever announced
    itself there (no bucket).

    Example::

        agents, runtimes = await read_presence(transport)
    """
    entries = await transport.kv_entries(BUCKET, "")
    now = time.time()
    agents: list[AgentPresence] = []
    runtimes: list[RuntimePresence] = []
    rejects = getattr(transport, "rejects", None)
    for e in entries:
        try:
            if e.key.startswith("agents."):
                agents.append(decode_guarded(_agent_decoder.decode, e.value, "presence record"))
            elif e.key.startswith("runtimes."):
                rec = decode_guarded(_runtime_decoder.decode, e.value, "presence record")
                if rec.updated + rec.interval * 3 >= now:
                    runtimes.append(rec)
        except DecodeError as exc:  # another version, or hostile: skipped and counted
            if isinstance(rejects, Rejects):
                rejects.add("presence", f"{BUCKET}:{e.key}", exc)
            else:
                logger.debug("presence: skipped an undecodable record %s: %s", e.key, exc)
    agents.sort(key=lambda r: (r.agent, r.host, r.pid, r.instance))
    runtimes.sort(key=lambda r: (r.host, r.pid, r.instance))
    return agents, runtimes
