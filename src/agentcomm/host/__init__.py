"""The host: runtime, agents, mailboxes, contexts and the extension point patterns register with.

Imports the core and the transports; never a pattern.
"""
