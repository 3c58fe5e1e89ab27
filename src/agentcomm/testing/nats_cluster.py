"""A JetStream cluster of nats-server processes on loopback, for tests and benchmarks.

:class:`NatsCluster` starts ``size`` servers (``n1``, ``n2``, ...), each with its own
store, client port and route port, routed to each other, and waits until JetStream
has a meta leader. Nodes can be killed with SIGKILL and restarted on the same ports
and stores, which is how the cluster tests make a leader fail. Every process is
stopped on exit.

Example::

    with NatsCluster(tmp_path, size=3) as cluster:
        transport = NatsTransport(cluster.urls, namespace="t", replicas=3)
        leader = cluster.node("n2"); leader.kill(); leader.start()
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
import urllib.request
from pathlib import Path
from types import TracebackType

from agentcomm.testing.nats_server import NatsServer

__all__ = ["NatsCluster"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class NatsCluster:
    """``size`` routed nats-server processes with JetStream (see the module docstring).

    Example::

        with NatsCluster(tmp_path) as cluster:
            print(cluster.urls)
    """

    def __init__(
        self,
        directory: str | Path,
        *,
        size: int = 3,
        name: str = "agentcomm",
        binary: str | None = None,
        ready: float = 30.0,
    ) -> None:
        if size < 1:
            raise ValueError("a cluster has at least one server")
        self.directory = Path(directory)
        self.ready_timeout = ready
        routes = [_free_port() for _ in range(size)]
        self.nodes: list[NatsServer] = []
        for i, route in enumerate(routes):
            others = ", ".join(f"nats-route://127.0.0.1:{p}" for p in routes)
            config = (
                f"server_name: n{i + 1}\n"
                "jetstream { max_memory_store: 256MB, max_file_store: 2GB }\n"
                f"cluster {{\n  name: {name}\n  listen: 127.0.0.1:{route}\n"
                f"  routes: [{others}]\n  pool_size: 1\n}}\n"
            )
            node = NatsServer(self.directory / f"n{i + 1}", binary=binary, config=config)
            self.nodes.append(node)

    @property
    def urls(self) -> list[str]:
        """Every node's client URL (valid after start)."""
        return [n.url for n in self.nodes]

    def node(self, name: str) -> NatsServer:
        """The node called ``name`` (``n1``, ``n2``, ...), as JetStream names it.

        Example::

            cluster.node(info.cluster.leader).kill()
        """
        for i, n in enumerate(self.nodes):
            if f"n{i + 1}" == name:
                return n
        raise KeyError(f"no node {name!r} in this cluster")

    def start(self) -> None:
        """Start every node that is not running and wait for a JetStream meta leader.

        Example::

            cluster.start()
        """
        for n in self.nodes:
            if not n.running:
                n.start()
        self.wait_meta_leader()

    def wait_meta_leader(self) -> str:
        """Block until every running node sees the same JetStream meta leader; its name.

        Example::

            leader = cluster.wait_meta_leader()
        """
        deadline = time.monotonic() + self.ready_timeout
        while True:
            leaders = {self._meta_leader(n) for n in self.nodes if n.running}
            if len(leaders) == 1 and None not in leaders:
                leader = leaders.pop()
                assert leader is not None
                return leader
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the cluster has no JetStream meta leader after {self.ready_timeout}s "
                    f"(seen {leaders}); see {self.directory}/n*/nats-server.log"
                )
            time.sleep(0.1)

    @staticmethod
    def _meta_leader(node: NatsServer) -> str | None:
        url = f"http://127.0.0.1:{node.monitor_port}/jsz"
        with contextlib.suppress(OSError, ValueError):
            with urllib.request.urlopen(url, timeout=1) as resp:
                leader = json.loads(resp.read()).get("meta_cluster", {}).get("leader")
                return str(leader) if leader else None
        return None

    def stop(self) -> None:
        """Stop every node (SIGTERM, then SIGKILL).

        Example::

            cluster.stop()
        """
        for n in self.nodes:
            n.stop()

    def __enter__(self) -> NatsCluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
