"""Pytest plugin: the ``make_runtime`` fixture, parametrized over transports.

Enable with ``pytest_plugins = ["agentcomm.testing.fixtures"]``. Every contract test
takes ``make_runtime``; it runs once per transport named by ``--transport`` (a
comma-separated list; default: every registered transport).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest

from agentcomm.api import Agent, Runtime
from agentcomm.testing.nats_server import NatsServer, require_nats_server
from agentcomm.transports.base import Transport

__all__ = [
    "TRANSPORT_FACTORIES",
    "MakeRuntime",
    "make_runtime",
    "nats_server",
    "nats_url",
    "pytest_addoption",
    "pytest_generate_tests",
]

MakeRuntime = Callable[..., Runtime]

#: Transport name -> factory(request) returning a fresh, unstarted Transport. The
#: factory may use other fixtures through ``request.getfixturevalue`` (a broker).
TRANSPORT_FACTORIES: dict[str, Callable[[pytest.FixtureRequest], Transport]] = {}


def _memory_factory(request: pytest.FixtureRequest) -> Transport:
    from agentcomm.transports.memory.transport import MemoryTransport

    return MemoryTransport()


TRANSPORT_FACTORIES["memory"] = _memory_factory


def _nats_factory(request: pytest.FixtureRequest) -> Transport:
    from agentcomm.testing.nats_server import require_nats_client

    require_nats_client()
    from agentcomm.transports.nats.transport import NatsTransport

    server: NatsServer = request.getfixturevalue("nats_server")
    # One namespace per test (shared by the runtimes one test makes), so tests never
    # see each other's subjects, streams or buckets on the shared session server.
    digest = hashlib.sha1(f"{_SESSION_SALT}:{request.node.nodeid}".encode()).hexdigest()
    return NatsTransport(server.url, namespace=f"t{digest[:16]}")


_SESSION_SALT = os.urandom(4).hex()
TRANSPORT_FACTORIES["nats"] = _nats_factory


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--transport",
        default="all",
        help="comma-separated transports for the contract suite (memory,nats) or 'all'",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "transport_name" in metafunc.fixturenames:
        opt = str(metafunc.config.getoption("--transport"))
        names = sorted(TRANSPORT_FACTORIES) if opt == "all" else [n.strip() for n in opt.split(",")]
        metafunc.parametrize("transport_name", names, scope="session")


@pytest.fixture
def make_runtime(request: pytest.FixtureRequest, transport_name: str) -> Iterator[MakeRuntime]:
    """A factory of runtimes on the transport under test: ``make_runtime(agents=[...])``.

    Two runtimes made by one test share the engine (the same broker, or for memory
    the same transport object is *not* shared: use one runtime per test there).

    Example::

        async def test_ping(make_runtime):
            async with make_runtime(agents=[pong]) as rt: ...
    """
    factory = TRANSPORT_FACTORIES.get(transport_name)
    if factory is None:
        pytest.fail(f"unknown transport {transport_name!r}; known: {sorted(TRANSPORT_FACTORIES)}")
    created: list[Runtime] = []

    def make(agents: Iterable[Agent] = (), **kwargs: Any) -> Runtime:
        rt = Runtime(transport=factory(request), agents=agents, **kwargs)
        created.append(rt)
        return rt

    yield make
    for rt in created:
        assert not rt.running, "a runtime from make_runtime was left running"


@pytest.fixture(scope="session")
def nats_server() -> Iterator[NatsServer]:
    """A ``nats-server -js`` shared by the whole test session (skips if not installed).

    Tests isolate themselves by namespace; fault tests that kill the broker start
    their own :class:`NatsServer` instead.

    Example::

        async def test_x(nats_server):
            nc = await nats.connect(nats_server.url)
    """
    require_nats_server()
    with tempfile.TemporaryDirectory(prefix="agentcomm-nats-") as tmp, NatsServer(tmp) as server:
        yield server


@pytest.fixture
def nats_url(nats_server: NatsServer) -> str:
    """The URL of the session's NATS server.

    Example::

        async def test_x(nats_url):
            async with Runtime(transport=nats_url): ...
    """
    return nats_server.url
