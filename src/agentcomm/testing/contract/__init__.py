"""The transport conformance suite: behavioural tests written once, run on every engine.

Each module holds plain pytest test functions that take the ``make_runtime``
fixture from :mod:`agentcomm.testing.fixtures`.
"""
