"""A2A: agents as Agent2Agent servers, and any A2A agent as a local one (``rt.a2a``).

The protocol is the official SDK's (``pip install 'agentcomm[a2a]'``), loaded only
when an exposure or a connection is made; this package's import costs nothing.
See ``docs/a2a.md``.

Example::

    exposure = await rt.a2a.expose("concierge", auth=[BearerAuth({"t0ken-abc": "partner"})])
"""

from agentcomm.a2a.auth import ApiKeyAuth, Auth, BearerAuth
from agentcomm.a2a.service import A2A

__all__ = ["A2A", "ApiKeyAuth", "Auth", "BearerAuth"]
