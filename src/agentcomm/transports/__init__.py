"""Transports (engines). This package imports nothing, so nats-py loads only when used.

Import an engine from its own module: ``agentcomm.transports.memory`` or
``agentcomm.transports.nats``.
"""
