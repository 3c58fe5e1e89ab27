"""Durable tasks: long-running work that outlives its caller and its worker.

A pattern over the host (imports the host, the transports and the core). Declare a
handler with ``@agent.task_handler``; start it with ``await caller.start_task(...)``,
which returns a :class:`~agentcomm.tasks.handle.TaskHandle` at once. The task's
record, progress, artifacts and result are kept in the engine's key/value store and
streams (JetStream on NATS), so any process can follow it (``caller.task(id)``).
See ``docs/streams-and-tasks.md``.
"""
