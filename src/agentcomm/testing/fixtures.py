"""Pytest plugin: the ``make_runtime`` and ``make_transport`` fixtures, over transports.

Enable with ``pytest_plugins = ["agentcomm.testing.fixtures"]``. Every contract test
takes ``make_runtime`` (the pattern suites) or ``make_transport`` (the engine suite,
``agentcomm.testing.contract.engine_*``); it runs once per transport named by
``--transport`` (a comma-separated list; default: every registered transport).

Within one test, everything made reaches one engine: on NATS, one namespace of the
session's server (each transport its own connection); in memory, one
``MemoryTransport`` shared by every runtime of the test (its start and close are
counted), so cross-runtime tests mean the same on both.
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
    "MakeTransport",
    "make_runtime",
    "make_transport",
    "nats_server",
    "nats_url",
    "pytest_addoption",
    "pytest_generate_tests",
]

MakeRuntime = Callable[..., Runtime]
MakeTransport = Callable[[], Transport]

#: Transport name -> factory(request) returning an unstarted Transport on the test's
#: engine: every transport one test gets reaches the others (the same broker and
#: namespace, or the same in-process engine object). The factory may use other
#: fixtures through ``request.getfixturevalue`` (a broker).
TRANSPORT_FACTORIES: dict[str, Callable[[pytest.FixtureRequest], Transport]] = {}

_MEMORY_ENGINE = pytest.StashKey[Transport]()


def _memory_factory(request: pytest.FixtureRequest) -> Transport:
    from agentcomm.transports.memory.transport import MemoryTransport

    # One engine per test, shared by its runtimes (as workers share a StubBroker).
    engine: Transport = request.node.stash.setdefault(_MEMORY_ENGINE, MemoryTransport())
    return engine


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

    Runtimes made by one test share the engine: on NATS each has its own connection
    to the test's namespace, in memory they share one ``MemoryTransport``. An agent
    name started in two of them is a queue group on both.

    Example::

        async def test_ping(make_runtime):
            async with make_runtime(agents=[pong]) as rt: ...
    """
    factory = _factory(transport_name)
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


@pytest.fixture
def make_transport(request: pytest.FixtureRequest, transport_name: str) -> MakeTransport:
    """A factory of unstarted transports on the engine under test, for the engine suite.

    Each call is one more user of the test's engine: a new connection on NATS, the
    test's shared ``MemoryTransport`` again in memory (its start and close are
    counted). The test starts and closes what it makes.

    Example::

        async def test_x(make_transport):
            t = make_transport()
            await t.start()
            try: ...
            finally: await t.close()
    """
    factory = _factory(transport_name)
    return lambda: factory(request)


def _factory(transport_name: str) -> Callable[[pytest.FixtureRequest], Transport]:
    factory = TRANSPORT_FACTORIES.get(transport_name)
    if factory is None:
        pytest.fail(f"unknown transport {transport_name!r}; known: {sorted(TRANSPORT_FACTORIES)}")
    return factory
