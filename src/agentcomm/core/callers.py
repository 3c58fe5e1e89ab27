"""A caller outside agentcomm (an MCP client): what ``ctx.roots`` returns, and the errors
``ctx.ask``, ``ctx.sample`` and ``ctx.roots`` raise when the client cannot or will not
answer (beside the tree of :mod:`agentcomm.core.errors`, drawn there).
"""

from __future__ import annotations

import msgspec

from agentcomm.core.errors import AgentCommError

__all__ = ["ClientUnsupported", "InputDeclined", "Root"]


class Root(msgspec.Struct, frozen=True):
    """One of the MCP client's roots (``ctx.roots()``): a ``file://`` URI and its name.

    Example::

        for root in await ctx.roots():
            print(root.uri, root.name)
    """

    uri: str
    name: str | None = None


class ClientUnsupported(AgentCommError):
    """The caller's client cannot do what the handler asked of it.

    Raised in a handler by ``ctx.ask()``, ``ctx.sample()`` or ``ctx.roots()`` when the MCP
    client that called the tool did not declare the elicitation, sampling or roots
    capability (or the handler was not called over MCP at all).

    Example::

        try:
            text = await ctx.sample([Message("user", "Name a colour")], max_tokens=10)
        except ClientUnsupported:
            text = "blue"
    """


class InputDeclined(AgentCommError):
    """The caller declined (or cancelled) a ``ctx.ask()`` question; ``action`` says which.

    Example::

        try:
            name = await ctx.ask("Your name?", returns=str)
        except InputDeclined as exc:
            print("no answer:", exc.action)
    """

    def __init__(self, message: str, action: str = "decline") -> None:
        super().__init__(message)
        self.action = action
