"""The core: errors, the envelope and its codec, payload schemas, limits, deadlines,
topics, flow-control values.

Imports nothing of agentcomm above it.
"""
