"""With an OTLP endpoint configured, the recorded spans are also exported over OTLP/HTTP."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from agentcomm import Agent, Runtime
from agentcomm.observability.tracing import TraceRecorder


@pytest.fixture
def collector() -> Iterator[tuple[str, list[bytes]]]:
    """A minimal OTLP/HTTP trace collector on 127.0.0.1 (any free port)."""
    received: list[bytes] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            if self.path == "/v1/traces":
                received.append(self.rfile.read(length))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


async def test_spans_reach_an_otlp_collector(
    collector: tuple[str, list[bytes]], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, received = collector
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", url)
    recorder = TraceRecorder()
    calc = Agent("calc")

    @calc.handler
    async def add(a: int, b: int) -> int:
        return a + b

    async with Runtime(agents=[calc], tracing=recorder.provider) as rt:
        assert await rt.agent("me").request("calc", "add", {"a": 1, "b": 2}) == 3
    assert recorder.provider.force_flush(10_000)
    names = set()
    for body in received:
        req = ExportTraceServiceRequest()
        req.ParseFromString(body)
        for rs in req.resource_spans:
            for ss in rs.scope_spans:
                names.update(span.name for span in ss.spans)
    assert {"request calc", "process calc"} <= names
    recorder.provider.shutdown()
