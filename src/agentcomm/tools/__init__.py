"""Tool sharing: the capability catalogue, MCP exposure and MCP consumption.

A pattern over the host; imports the host, the transports and the core.
"""
