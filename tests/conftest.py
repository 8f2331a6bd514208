"""Shared fixtures: every test gets its own data directory (and database); nothing touches the repo's files.

Storage tests run against both backends: the ``backend`` fixture is parametrized over SQLite (a file
in the test's directory) and PostgreSQL (a fresh schema on a throwaway server started once per
session, see ``tests/pgserver.py``). Without PostgreSQL's binaries the PostgreSQL half skips,
unless SUPPORTBOT_REQUIRE_POSTGRES=1 (CI), where it fails.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from supportbot.storage.db import Database, open_database
from supportbot.storage.store import Store
from tests import pgserver

# A fixed day so dates derived from the demo offsets are reproducible.
DEMO_TODAY = date(2025, 3, 14)
BACKENDS = ("sqlite", pytest.param("postgresql", marks=pytest.mark.postgres))


@pytest.fixture
def today() -> date:
    """The pinned 'today' the demo data is seeded against."""
    return DEMO_TODAY


@pytest.fixture(scope="session")
def pg_server() -> Iterator[pgserver.PgServer]:
    """A throwaway PostgreSQL server for the whole session (skipped, or failed in CI, when unavailable)."""
    reason = pgserver.missing()
    if reason:
        if os.environ.get("SUPPORTBOT_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"SUPPORTBOT_REQUIRE_POSTGRES=1 but {reason}")
        pytest.skip(reason)
    server = pgserver.PgServer.start()
    yield server
    server.stop()


class Backend:
    """One storage backend for a test: a database per location (a data directory), opened on demand."""

    def __init__(self, name: str, server: pgserver.PgServer | None) -> None:
        self.name = name
        self.server = server
        self._urls: dict[Path, str] = {}
        self._open: list[Any] = []  # databases and services to close at teardown

    def url(self, location: Path) -> str | None:
        """The SUPPORTBOT_DATABASE_URL for ``location``: None for SQLite (the file lives there), else a
        PostgreSQL schema of its own (as good as a database for our tables), the same one each time."""
        if self.server is None:
            return None
        key = Path(location).resolve()
        if key not in self._urls:
            self._urls[key] = self.server.create_schema()
        return self._urls[key]

    def database(self, location: Path) -> Database:
        """A newly opened connection to ``location``'s database (closed at teardown)."""
        db = open_database(self.url(location), Path(location))
        self._open.append(db)
        return db

    def settings(self, data_dir: Path, **overrides: Any):
        """Settings on the offline engine with ``data_dir`` and, for PostgreSQL, its database."""
        from supportbot.config import Settings

        url = self.url(data_dir)
        values = {"data_dir": data_dir, "engine": "offline", **({"database_url": url} if url else {}), **overrides}
        return Settings.load(values, environ={}, dotenv_path=None)

    def services(self, settings, engine=None):
        """``Services.create`` whose database is closed at teardown."""
        from supportbot.services import Services

        made = Services.create(settings, engine)
        self._open.append(made)
        return made

    def close(self) -> None:
        for thing in reversed(self._open):
            thing.close()
        if self.server is not None:
            for url in self._urls.values():
                self.server.drop_schema(url)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    """SQLite, then PostgreSQL: the same test against each storage backend."""
    server = request.getfixturevalue("pg_server") if request.param == "postgresql" else None
    chosen = Backend(request.param, server)
    yield chosen
    chosen.close()


@pytest.fixture
def database(backend: Backend, tmp_path: Path) -> Database:
    """An empty database on each backend."""
    return backend.database(tmp_path)


@pytest.fixture
def store(database: Database, today: date) -> Iterator[Store]:
    """A freshly seeded store, on each backend."""
    s = Store(database, today=today)
    yield s
    s.close()


# --- a launched app on the offline engine, shared by the gradio_client and browser tests ---

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


def launch_app(data_dir: Path, services=None, worker_services=None, stream_delay_s: float | None = None, **overrides):
    """Build and launch the playground on a free loopback port; returns (demo, url).

    ``services``, a function of the settings, makes the app's Services; ``stream_delay_s`` is the
    common case, an offline engine that streams that slowly (so a turn can be interrupted);
    ``worker_services``, a module-level function, makes each turn worker's (with ``turn_workers``)."""
    from supportbot.config import Settings
    from supportbot.ui.app import build_app, launch_options, queue_options

    if stream_delay_s is not None:
        from supportbot.engine import OfflineEngine
        from supportbot.services import Services

        def services(settings):
            return Services.create(settings, OfflineEngine(stream_delay_s=stream_delay_s))

    settings = Settings.load({"data_dir": data_dir, "engine": "offline", **overrides}, environ={}, dotenv_path=None)
    demo = build_app(settings, services(settings) if services else None, worker_services=worker_services)
    options = launch_options(settings, env={})
    options.update(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True)
    demo.queue(**queue_options(settings))
    _, url, _ = demo.launch(**options)
    return demo, url


@pytest.fixture(scope="module")
def app_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a playground launched for this test module."""
    demo, url = launch_app(tmp_path_factory.mktemp("app-data"))
    yield url
    demo.close()
