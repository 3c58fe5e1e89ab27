"""Errors about a caller outside agentcomm (an MCP client), beside the tree of
:mod:`agentcomm.core.errors` (drawn there): what ``ctx.ask`` and ``ctx.sample`` raise when
the client cannot or will not answer.
"""

from __future__ import annotations

from agentcomm.core.errors import AgentCommError

__all__ = ["ClientUnsupported", "InputDeclined"]


class ClientUnsupported(AgentCommError):
    """The caller's client cannot do what the handler asked of it.

    Raised in a handler by ``ctx.ask()`` or ``ctx.sample()`` when the MCP client that
    called the tool did not declare the elicitation or sampling capability (or the
    handler was not called over MCP at all).

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
