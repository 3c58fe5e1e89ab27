"""The official A2A compatibility kit against ``agentcomm a2a serve`` of an example agent.

Every ``mandatory`` requirement passes, over JSON-RPC and over HTTP+JSON (the card
declares both), and the ``capabilities`` ones for what the card declares
(streaming; push notifications and the extended card are declared off, so the kit
skips theirs). Two kit tests cannot pass on any server built on
the SDK, listed below with why; any other failure fails this test. Under
``CI=true`` the kit runs, never skips.
"""

from __future__ import annotations

import pytest

from agentcomm.testing.extras import require_module

require_module("a2a")

from tests.a2a import tck  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

#: Kit tests that fail whatever the server does.
KIT_BUGS = {
    # the kit calls its own helper with one argument too many: a TypeError in the kit
    "tests/mandatory/jsonrpc/test_a2a_error_codes_enhanced.py::"
    "test_push_notification_not_supported_error_32003_enhanced",
    # it wants an SSE error event for an unknown task; the SDK answers a streaming call
    # that fails before its first event with a plain JSON-RPC error (-32001), as spec
    # 1.0 allows, and the kit's client raises on the content type before reading it
    "tests/optional/capabilities/test_streaming_methods.py::test_tasks_subscribe_nonexistent",
}

TARGET = "examples/a2a_tck_agent.py:agent"


@pytest.fixture(scope="module")
def kit() -> tuple[object, object]:
    return tck.install()


def _serve_args(port: int) -> list[str]:
    # the card announces a host name: the kit flags a numeric loopback address as a leak
    return [
        "--default",
        "converse",
        "--send-wait",
        "0.3",
        "--public-url",
        f"http://localhost:{port}/",
    ]


@pytest.mark.parametrize(
    ("category", "transport"),
    [("mandatory", "jsonrpc"), ("capabilities", "jsonrpc"), ("mandatory", "rest")],
)
def test_the_kit_passes(kit: tuple[object, object], category: str, transport: str) -> None:
    work, python = kit
    port = tck.free_port()
    with tck.serving(TARGET, *_serve_args(port), port=port) as url:
        counts, failed = tck.run(work, python, url, category, transport)  # type: ignore[arg-type]
    print(f"TCK {category} over {transport}: {counts}")
    assert counts.get("passed", 0) > 0, "the kit ran no test"
    assert failed <= KIT_BUGS, f"TCK {category} failures: {sorted(failed - KIT_BUGS)}"
    assert counts.get("failed", 0) + counts.get("error", 0) == len(failed)
