"""Prometheus: a runtime's metrics in the text exposition format, and an endpoint serving them.

Built on ``prometheus_client`` (the ``otel`` extra), imported when first used:
its exposition formats the metrics of
:data:`~agentcomm.observability.metric_specs.SPECS` and its WSGI application
answers the scrapes. The endpoint's HTTP server (the standard library's
``wsgiref``) runs in one thread owned by the endpoint; each scrape takes its
snapshot on the runtime's event loop, never from that thread.

Example::

    print(prometheus_text(rt))                        # agentcomm_agent_handled_total{...} 3.0
    endpoint = await serve_prometheus(rt, port=0)     # GET endpoint.url
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import socket
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from agentcomm.core.errors import ConfigurationError
from agentcomm.observability.metric_specs import SPECS, MetricSpec, View, observe

if TYPE_CHECKING:
    from agentcomm.host.runtime import Runtime

__all__ = ["PrometheusEndpoint", "prometheus_name", "prometheus_text", "serve_prometheus"]

logger = logging.getLogger("agentcomm.metrics")

#: How long a scrape waits for the event loop to take its snapshot.
SCRAPE_TIMEOUT = 10.0


def _client() -> Any:
    try:
        import prometheus_client
    except ImportError as exc:
        raise ConfigurationError(
            "Prometheus metrics need prometheus_client: pip install 'agentcomm[otel]'"
        ) from exc
    return prometheus_client


def prometheus_name(spec: MetricSpec) -> str:
    """The Prometheus name of a metric: dots become underscores, counters end in ``_total``.

    Example::

        prometheus_name(SPECS[0])   # 'agentcomm_runtime_failures_total'
    """
    name = spec.name.replace(".", "_")
    return f"{name}_total" if spec.kind == "counter" else name


def _families(rt: Runtime) -> list[Any]:
    """Every metric of ``rt`` as prometheus_client metric families (on the loop's thread)."""
    from prometheus_client.metrics_core import Metric

    view = View(rt)
    out: list[Any] = []
    for spec in SPECS:
        family = Metric(spec.name.replace(".", "_"), spec.description, spec.kind)
        sample = prometheus_name(spec)
        for attrs, value in observe(spec, view):
            family.add_sample(sample, {k: str(v) for k, v in attrs.items()}, float(value))
        out.append(family)
    return out


class _Collector:
    """A prometheus_client collector over one runtime.

    With ``loop`` (the endpoint's), a scrape from the server's thread hands the
    snapshot to the loop and waits for it; without, it runs where it is called.
    """

    def __init__(self, rt: Runtime, loop: asyncio.AbstractEventLoop | None) -> None:
        self.rt = rt
        self.loop = loop

    def collect(self) -> Iterable[Any]:
        if self.loop is None:
            return _families(self.rt)

        async def take() -> list[Any]:
            return _families(self.rt)

        future = asyncio.run_coroutine_threadsafe(take(), self.loop)
        try:
            return future.result(SCRAPE_TIMEOUT)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise


def _registry(collector: _Collector) -> Any:
    registry = _client().CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


def prometheus_text(rt: Runtime) -> str:
    """Every metric of ``rt`` in the Prometheus text exposition format.

    Needs ``prometheus_client`` (``pip install 'agentcomm[otel]'``); call it on the
    runtime's event loop.

    Example::

        print(prometheus_text(rt))   # agentcomm_agent_handled_total{agent="calc"} 3.0
    """
    text: bytes = _client().generate_latest(_registry(_Collector(rt, None)))
    return text.decode()


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a scrape in progress never holds the process


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("prometheus endpoint: " + format, *args)


WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def _only_metrics(metrics: WsgiApp) -> WsgiApp:
    """``metrics`` at ``/metrics`` for GET and HEAD; 404 or 405 with a hint otherwise."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        plain = [("Content-Type", "text/plain; charset=utf-8")]
        if environ.get("PATH_INFO", "") != "/metrics":
            start_response("404 Not Found", plain)
            return [b"the metrics are at /metrics\n"]
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            start_response("405 Method Not Allowed", [*plain, ("Allow", "GET, HEAD")])
            return [b"use GET /metrics\n"]
        if environ["REQUEST_METHOD"] == "HEAD":  # the headers of a GET, no body
            body = metrics({**environ, "REQUEST_METHOD": "GET"}, start_response)
            close = getattr(body, "close", None)
            if close is not None:
                close()
            return []
        return metrics(environ, start_response)

    return app


class PrometheusEndpoint:
    """An HTTP server answering ``GET /metrics`` for one runtime; see :func:`serve_prometheus`.

    Example::

        endpoint = await serve_prometheus(rt, port=0); print(endpoint.url)
    """

    def __init__(self, rt: Runtime) -> None:
        self.runtime = rt
        self.server: WSGIServer | None = None
        self.host = ""
        self.port = 0
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """``http://host:port/metrics``."""
        return f"http://{self.host}:{self.port}/metrics"

    async def start(self, host: str, port: int) -> None:
        """Listen on ``host:port`` (0 picks a free port) and serve in the endpoint's thread."""
        client = _client()
        registry = _registry(_Collector(self.runtime, asyncio.get_running_loop()))
        app = _only_metrics(client.make_wsgi_app(registry))
        try:
            family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
            server_class = type("_Server", (_Server,), {"address_family": family})
            server: WSGIServer = make_server(host, port, app, server_class, _QuietHandler)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot serve metrics on {host}:{port}: {exc}; pick another port"
            ) from exc
        self.server = server
        self.host, self.port = str(server.server_address[0]), int(server.server_address[1])
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.2},
            name="agentcomm:prometheus", daemon=True,
        )  # fmt: skip
        self._thread.start()

    async def aclose(self) -> None:
        """Stop listening (the runtime does it at shutdown)."""
        server, self.server = self.server, None
        thread, self._thread = self._thread, None
        if server is None:
            return
        if thread is not None:
            await asyncio.to_thread(server.shutdown)  # returns once serve_forever has
            thread.join()
        server.server_close()


async def serve_prometheus(
    rt: Runtime, *, host: str = "127.0.0.1", port: int = 9464
) -> PrometheusEndpoint:
    """Serve ``rt``'s metrics at ``http://host:port/metrics`` until the runtime stops.

    One per runtime; it listens on loopback unless told otherwise (the metrics name
    agents and topics). ``port=0`` picks a free port (see ``endpoint.port``). Needs
    ``prometheus_client`` (``pip install 'agentcomm[otel]'``).

    Example::

        async with Runtime(agents=[calc]) as rt:
            endpoint = await serve_prometheus(rt, port=0)
            print(endpoint.url)
    """
    if not rt.running:
        raise ConfigurationError(
            "start the runtime first: call serve_prometheus inside `async with`"
        )
    if rt.existing_extension("prometheus") is not None:
        raise ConfigurationError("this runtime already serves Prometheus metrics")
    _client()  # a missing extra fails before anything is registered
    endpoint: PrometheusEndpoint = rt.extension("prometheus", PrometheusEndpoint)
    try:
        await endpoint.start(host, port)
    except BaseException:
        rt.remove_extension("prometheus")
        raise
    return endpoint
