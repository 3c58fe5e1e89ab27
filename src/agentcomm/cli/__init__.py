"""The command line: ``agentcomm`` commands, operator tools, the demo.

The top: nothing imports it.
"""

from agentcomm.cli.main import main

__all__ = ["main"]
