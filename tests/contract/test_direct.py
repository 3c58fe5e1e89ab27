"""Direct-message contract, run on every registered transport."""

from agentcomm.testing.contract.direct import *  # noqa: F403
