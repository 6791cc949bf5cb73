from __future__ import annotations

import json
import sqlite3
import textwrap
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bridge.app import ConnectionLimit, create_app, runner_options
from bridge.config import Settings
from bridge.core.dburl import DatabaseUrl
from bridge.core.secrets import Secret
from bridge.delivery.worker import OutboxWorker
from bridge.metrics import Metrics
from bridge.runtime import Runtime, builtin_runtime, rules_runtime
from bridge.service import AppState, api_access
from bridge.service.database import new_store as service_store
from bridge.store import Store, new_store
from bridge.targets.base import TargetDeps
from tests.fakes.base import serving
from tests.fakes.slack import SlackAPIFake
from tests.pgcluster import Cluster, running_cluster

FIXTURES = Path(__file__).parent / "fixtures" / "alertmanager-0.25"
T0 = 1_795_752_400_000_000_000  # 2026-11-27T04:06:40Z, after every fixture's startsAt
SECOND = 1_000_000_000


def fixture_body(name: str) -> dict[str, Any]:
    """The parsed body of a captured webhook."""
    body: dict[str, Any] = json.loads((FIXTURES / name).read_text())["body"]
    return body


def fixture_bytes(name: str) -> bytes:
    return json.dumps(fixture_body(name)).encode()


class Clock:
    """A clock the test moves by hand (nanoseconds since the epoch)."""

    def __init__(self, now: int = T0) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += int(seconds * SECOND)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path: Path) -> Any:
    s = Store(tmp_path / "bridge.db")
    s.open()
    yield s
    s.close()


# The store's backends. A test runs on both when it takes the ``backend`` fixture (or
# ``db_settings``/``any_store``, which do); PostgreSQL's cluster starts at the first such test.
BACKENDS = ("sqlite", "postgresql")
TEMPLATE = "bridge_template"


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    """The tests' PostgreSQL server, with a template database that holds the schema."""
    with running_cluster() as cluster:
        cluster.sql(f"CREATE DATABASE {TEMPLATE}")
        template = new_store(Path("unused"), url=DatabaseUrl.parse(cluster.url(TEMPLATE)))
        template.open()
        template.close()
        cluster.template = TEMPLATE
        yield cluster


@pytest.fixture
def pg_url(pg_cluster: Cluster) -> str:
    """A database of this test's own, with the schema."""
    return pg_cluster.new_database(template=pg_cluster.template)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# The mark of a test (or a module's ``pytestmark``) whose service runs on each backend: its
# database comes from ``service_db`` (``make_client``, the integration tests' ``bridge_db``).
BOTH_BACKENDS = pytest.mark.usefixtures("backend")


@pytest.fixture
def db_settings(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> dict[str, Any]:
    """``Settings`` fields that put a test's service on the backend: SQLite's file in
    ``tmp_path``, or a PostgreSQL database of its own (its other files in ``tmp_path``)."""
    if backend == "sqlite":
        return {"db": tmp_path / "bridge.db"}
    url = request.getfixturevalue("pg_url")
    return {"db": tmp_path / "incident-bridge", "database_url": DatabaseUrl.parse(url)}


def service_db(request: pytest.FixtureRequest, tmp_path: Path, name: str) -> dict[str, Any]:
    """``Settings`` fields for one more database of a test's service, ``name`` telling several
    apart: on PostgreSQL (a database of its own) when the test runs on that backend -- it
    takes ``backend``/``db_settings`` or is marked ``BOTH_BACKENDS`` -- else SQLite's
    ``<name>.db``. Tests opt in so rather than through a parametrized ``make_client``: the
    HTTP tests that are not about the store (floods, fuzzing, hardening) run once."""
    if "backend" not in request.fixturenames or request.getfixturevalue("backend") == "sqlite":
        return {"db": tmp_path / f"{name}.db"}
    cluster: Cluster = request.getfixturevalue("pg_cluster")
    url = cluster.new_database(template=cluster.template)
    return {"db": tmp_path / name, "database_url": DatabaseUrl.parse(url)}


def open_store(settings: Settings) -> Any:
    """The store of ``settings`` (either backend), open."""
    s = service_store(settings)  # as the service opens it
    s.open()
    return s


@pytest.fixture
def any_store(db_settings: dict[str, Any]) -> Any:
    """An open store on each backend."""
    s = open_store(Settings(**db_settings))
    yield s
    s.close()


def rows(store: Any, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """The rows of ``sql`` (the store's shared dialect) read through a connection of its own,
    as another process would: SQLite's file, or a new PostgreSQL connection."""
    if isinstance(store, Store):
        conn = sqlite3.connect(store.path)
        try:
            return list(conn.execute(sql, args).fetchall())
        finally:
            conn.close()
    import psycopg

    from bridge.store.postgres.connection import PgConnection

    with psycopg.connect(store.url.conninfo, autocommit=True) as raw:
        return [tuple(r) for r in PgConnection(raw).execute(sql, args).fetchall()]


def execute(store: Any, sql: str, args: Sequence[Any] = ()) -> None:
    """One statement (the shared dialect) committed through a connection of its own."""
    if isinstance(store, Store):
        conn = sqlite3.connect(store.path)
        try:
            conn.execute(sql, args)
            conn.commit()
        finally:
            conn.close()
        return
    import psycopg

    from bridge.store.postgres.connection import PgConnection

    with psycopg.connect(store.url.conninfo, autocommit=True) as raw:
        PgConnection(raw).execute(sql, args)


MakeClient = Callable[..., Any]
# The write token a test service has when its settings configure none (``serve`` generates one).
GENERATED_API_TOKEN = "generated-api-token"
WRITE = {"Authorization": f"Bearer {GENERATED_API_TOKEN}"}


def app_state(
    settings: Settings,
    *,
    clock: Clock | None = None,
    runtime: Runtime | None = None,
    worker: bool = False,
) -> AppState:
    """The service's shared state on a store opened at ``settings.db`` (the caller closes
    it): the built-in rules unless ``runtime`` is given, the service's clock unless ``clock``
    is, and with ``worker`` an outbox worker over the rules' targets (not started)."""
    store = open_store(settings)
    if runtime is None:
        runtime = builtin_runtime(settings.reopen_window_s, TargetDeps())
    extra: dict[str, Any] = {} if clock is None else {"clock": clock}
    if worker:
        extra["worker"] = OutboxWorker(store, runtime.targets, Metrics.create(), **extra)
    return AppState(
        settings=settings,
        store=store,
        metrics=Metrics.create(),
        runtime=runtime,
        # as `serve` does: without a configured token, one is generated for writes
        api=api_access(settings, Secret(GENERATED_API_TOKEN)),
        **extra,
    )


class RulesService:
    """One life of the service as ``run`` wires it over a rules file, on a clock the test
    moves: the store, the rules, the outbox worker and the HTTP app (``serve``); the loops a
    test needs besides, its subclass starts and stops. ``db`` is the database's settings
    (``db_settings``; SQLite's ``bridge.db`` without); ``rows`` reads it through a connection
    of its own."""

    def __init__(
        self,
        tmp_path: Path,
        clock: Clock,
        make_client: Any,
        rules: str,
        db: dict[str, Any] | None = None,
    ) -> None:
        self.rules = tmp_path / "rules.yaml"
        self.rules.write_text(textwrap.dedent(rules))
        self.settings = Settings(**(db or {"db": tmp_path / "bridge.db"}), rules=(self.rules,))
        self.clock = clock
        self.make_client = make_client
        self.store: Store | None = None
        self.state: AppState | None = None
        self.worker: OutboxWorker | None = None
        self.client: TestClient[Any, Any] | None = None

    async def serve(self) -> AppState:
        runtime = rules_runtime([self.rules], TargetDeps())
        state = app_state(self.settings, clock=self.clock, runtime=runtime, worker=True)
        self.state, self.store, self.worker = state, state.store, state.worker
        server = TestServer(create_app(state))
        await server.start_server(**runner_options(self.settings))
        self.client = await self.make_client(server)
        assert self.worker is not None
        self.worker.start()
        return state

    async def close(self) -> None:
        """What ``serve`` started, once the subclass's loops are stopped."""
        assert self.worker and self.store and self.client
        await self.client.close()
        await self.worker.stop()
        self.store.close()

    def rows(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        assert self.store is not None, "rows() reads the database of a service that was served"
        return rows(self.store, sql, *args)


@pytest.fixture
async def slack_api() -> AsyncIterator[SlackAPIFake]:
    """The Slack Web API fake, served for the test (targets' and the digests' tests)."""
    async with serving(SlackAPIFake()) as f:
        yield f


@pytest.fixture
async def make_client(
    aiohttp_client: Any, tmp_path: Path, clock: Clock, request: pytest.FixtureRequest
) -> AsyncIterator[MakeClient]:
    """Start the real app on a real database, a new one per call (SQLite's file, or
    PostgreSQL's when the test runs on a backend: ``service_db``); keyword args override
    Settings."""
    stores: list[Any] = []

    async def make(**overrides: Any) -> TestClient[Any, Any]:
        db = service_db(request, tmp_path, f"bridge{len(stores)}")
        settings = Settings(**{**db, **overrides})
        state = app_state(settings, clock=clock)
        stores.append(state.store)
        server = TestServer(create_app(state))
        await server.start_server(**runner_options(settings))
        assert server.runner is not None and server.runner.server is not None
        ConnectionLimit(server.runner.server, settings.max_connections)
        client: TestClient[Any, Any] = await aiohttp_client(server)
        return client

    yield make
    for s in stores:
        s.close()
