"""Pub/sub events: topics, subscriptions, consumer groups, dead letters, metrics.

A pattern over the host; imports the host, the transports and the core.
"""
