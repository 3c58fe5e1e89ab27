"""Observability: tracing, metrics, presence.

Cross-cutting: reached through hooks the host calls.
"""
