"""Testing helpers, public: the transport conformance suite and broker fixtures.

Run the suite against your own transport by adding to your ``conftest.py``::

    pytest_plugins = ["agentcomm.testing.fixtures"]

and importing the contract modules into a test file::

    from agentcomm.testing.contract.direct import *  # noqa: F403

Select transports with ``--transport memory,nats`` (default: every available one).
A test that needs an optional dependency imports it with
``agentcomm.testing.extras.require_module(name)``: skipped locally, failed under ``CI=true``.
"""
