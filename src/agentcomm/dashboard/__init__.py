"""A live dashboard in the browser: agents, message flow, traces, topics, dead letters,
the blackboard and tasks (the ``dashboard`` extra: Starlette and uvicorn).

``async with rt.dashboard() as dash: print(dash.url)`` for a runtime in this
process; ``agentcomm dashboard --nats URL`` for a namespace on NATS. The page is
static HTML, CSS and JavaScript shipped in the package (no build step), live over
server-sent events. ``import agentcomm`` never imports this package. See
``docs/dashboard.md``.

Example::

    from agentcomm.dashboard import Dashboard, RuntimeSource

    async with Dashboard(RuntimeSource(rt), allow_actions=True) as dash:
        print(dash.url)
"""

from __future__ import annotations

from agentcomm.dashboard.server import Dashboard
from agentcomm.dashboard.sources import RuntimeSource
from agentcomm.dashboard.wire import NamespaceSource

__all__ = ["Dashboard", "NamespaceSource", "RuntimeSource"]
