"""Where the dashboard's figures come from: one runtime in-process, or a namespace on NATS.

Both read through the library's own APIs, as the operator commands do: agents from
``rt.statistics()`` (in-process) or the presence records (:func:`read_presence`, a
namespace); topics and subscriptions from the pub/sub statistics; dead letters,
the blackboard and durable tasks through ``PubSub``, ``Blackboard`` and ``Tasks`` of
the runtime given (in the ``agentcomm dashboard`` command, an operator runtime of
its own, with no agents and no presence). Messages come from the runtime's bounded
message log, polled (:class:`RuntimeSource`), or from a plain subscription to the
namespace's subjects, as ``agentcomm tail`` does (:class:`NamespaceSource`, in
:mod:`agentcomm.dashboard.wire`).

Example::

    source = RuntimeSource(rt)
    snap = await source.snapshot()
    envelopes, unseen = source.poll()
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import msgspec

from agentcomm.blackboard.board import Blackboard
from agentcomm.core.errors import ConfigurationError
from agentcomm.observability.sources import pubsub_statistics
from agentcomm.pubsub.bus import PubSub
from agentcomm.tasks.service import Tasks

if TYPE_CHECKING:
    from agentcomm.core.envelope import Envelope
    from agentcomm.host.runtime import Runtime

__all__ = ["RuntimeSource", "Seen", "agent_counts"]

#: One envelope seen: the envelope, the kind to show (or ``None``: its own), its size.
Seen = tuple["Envelope", str | None, int | None]


def _builtins(obj: Any) -> Any:
    """Plain values of a struct; raw payloads (JSON already) are decoded in place."""
    return msgspec.json.decode(msgspec.json.encode(obj))


class RuntimeSource:
    """The figures of one runtime, read in its own process (``rt.dashboard()``).

    Example::

        source = RuntimeSource(rt); print((await source.snapshot())["agents"])
    """

    scope = "runtime"

    def __init__(self, rt: Runtime, *, bucket: str = "blackboard", operator: str = "operator"):
        self.rt = rt
        self.operator = operator
        self.board = Blackboard(rt, bucket=bucket, author=operator)
        self._last: Envelope | None = None
        self._logged = 0
        #: Polls that found the message log wrapped past the last envelope seen.
        self.wraps = 0

    async def start(self) -> None:
        """Nothing to open for a runtime in this process."""

    async def aclose(self) -> None:
        """Nothing to close."""

    # -- messages ---------------------------------------------------------------------
    def poll(self) -> tuple[list[Seen], int]:
        """Envelopes logged since the last poll, and how many were missed (log wrapped).

        Reads the bounded message log (``rt.message_log``): the agents' path is not
        touched, and a poll costs at most the log's size. When the log wrapped past
        the last envelope seen, the number missed is estimated from the counters of
        what is logged: notifications sent, requests (logged with their response)
        and events published.
        """
        items = self.rt.message_log.recent()
        logged = self._logged_estimate()
        last = self._last
        new = items
        missed = 0
        if last is not None:
            for i in range(len(items) - 1, -1, -1):
                if items[i] is last:
                    new = items[i + 1 :]
                    break
            else:
                if items:
                    self.wraps += 1
                    missed = max(logged - self._logged - len(new), 1)
        if items:
            self._last = items[-1]
        self._logged = logged
        return [(e, None, None) for e in new], missed

    def _logged_estimate(self) -> int:
        n = 0
        for a in self.rt.agents.values():
            s = a.statistics()
            n += s.sent + 2 * s.requested
        ps = pubsub_statistics(self.rt)
        return n + (0 if ps is None else ps.published)

    # -- figures ----------------------------------------------------------------------
    async def snapshot(self) -> dict[str, Any]:
        """Agents, topics, subscriptions, dead letters and failures, as plain values."""
        stats = self.rt.statistics()
        now = time.time()
        agents: list[dict[str, Any]] = [
            {
                "agent": a.name,
                "instance": "",
                "where": "this process",
                "handlers": list(a.handlers),
                **agent_counts(a),
                "updated": now,
            }
            for a in stats.agents
        ]
        ps = pubsub_statistics(self.rt)
        if ps is not None:
            subs_of: dict[str, list[str]] = {}
            for s in ps.subscriptions:
                subs_of.setdefault(s.agent, []).append(s.pattern)
            for row in agents:
                row["subscriptions"] = subs_of.get(row["agent"], [])
        failures = {k: _builtins(v) for k, v in stats.errors.items()}
        return {
            "time": now,
            "scope": self.scope,
            "transport": stats.transport,
            "agents": agents,
            "topics": [] if ps is None else [_builtins(t) for t in ps.topics],
            "subscriptions": [] if ps is None else [_builtins(s) for s in ps.subscriptions],
            "events_stored": 0 if ps is None else ps.events_stored,
            "dead_letters": 0 if ps is None else ps.dead_letters,
            "failures": failures,
            "messages_logged": stats.messages_logged,
        }

    # -- dead letters -----------------------------------------------------------------
    async def dead_letters(self, limit: int = 200) -> list[dict[str, Any]]:
        """The dead-letter queue, newest last, each with its event as plain values."""
        ps = PubSub.of(self.rt)
        out = []
        for dl in await ps.dead_letters(limit=limit):
            try:
                d = _builtins(dl)
            except msgspec.DecodeError:  # stored bytes that are not JSON: shown as text
                d = _builtins(msgspec.structs.replace(dl, event=_as_text(dl.event)))
            out.append(d)
        return out

    async def redrive(self, sequence: int) -> dict[str, Any]:
        """Redrive one dead letter as the operator (the policy decides: ``publish`` its topic).

        In-process the event goes back to the subscription that dead-lettered it
        (``rt.events.redrive``), which then runs its handler.
        """
        ps = PubSub.of(self.rt)
        dl = await ps.dead_letter(sequence)
        if dl is None:
            raise ConfigurationError(f"no dead letter #{sequence}")
        self.rt.authorize(self.operator, "publish", dl.topic)
        ok = await ps.redrive(sequence)
        return {"redriven": sequence, "topic": dl.topic, "handled": ok}

    async def discard(self, sequence: int) -> dict[str, Any]:
        """Delete one dead letter without handling it (policy: ``publish`` its topic)."""
        from agentcomm.pubsub.declare import DEAD_LETTER_STREAM

        ps = PubSub.of(self.rt)
        dl = await ps.dead_letter(sequence)
        if dl is None:
            raise ConfigurationError(f"no dead letter #{sequence}")
        self.rt.authorize(self.operator, "publish", dl.topic)
        gone = await self.rt.transport.delete_message(DEAD_LETTER_STREAM, sequence)
        return {"discarded": sequence, "deleted": gone}

    # -- blackboard -------------------------------------------------------------------
    async def board_list(self, prefix: str) -> list[dict[str, Any]]:
        """The entries under ``prefix`` (read as the operator)."""
        entries = await self.board.read_prefix(prefix)
        return [_builtins(e) for _, e in sorted(entries.items())]

    async def board_history(self, key: str) -> list[dict[str, Any]]:
        """Every kept change of ``key``, oldest first."""
        return [_builtins(c) for c in await self.board.history(key)]

    async def board_delete(self, key: str) -> dict[str, Any]:
        """Delete ``key`` as the operator (the policy decides: ``write`` the key)."""
        rev = await self.board.delete(key)
        return {"deleted": key, "revision": rev}

    # -- tasks ------------------------------------------------------------------------
    async def tasks(self, limit: int = 100) -> list[dict[str, Any]]:
        """The retained durable tasks, newest first."""
        return [_builtins(s) for s in (await Tasks.of(self.rt).list())[:limit]]


def _as_text(env: Envelope) -> Envelope:
    text = bytes(env.payload).decode("utf-8", "replace")
    return msgspec.structs.replace(env, payload=msgspec.Raw(msgspec.json.encode(text)))


def agent_counts(a: Any) -> dict[str, Any]:
    """An agent's counters as the page shows them (from ``AgentStatistics``).

    Example::

        row = {"agent": s.name, **agent_counts(s)}
    """
    return {
        "running": a.running,
        "queued": a.queued,
        "mailbox_size": a.mailbox_size,
        "in_flight": a.in_flight,
        "received": a.received,
        "handled": a.handled,
        "failed": a.failed,
        "rejected": a.rejected,
        "expired": a.expired,
        "sent": a.sent + a.requested,
    }
