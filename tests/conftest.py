"""Shared fixtures: every test gets its own data directory; nothing touches the repo's files."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from supportbot.storage.store import Store

# A fixed day so dates derived from the demo offsets are reproducible.
DEMO_TODAY = date(2025, 3, 14)


@pytest.fixture
def today() -> date:
    """The pinned 'today' the demo data is seeded against."""
    return DEMO_TODAY


@pytest.fixture
def store(tmp_path: Path, today: date) -> Iterator[Store]:
    """A freshly seeded store in a temporary SQLite file."""
    s = Store(tmp_path / "supportbot.db", today=today)
    yield s
    s.close()


# --- a launched app on the offline engine, shared by the gradio_client and browser tests ---

import os  # noqa: E402

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


def launch_app(data_dir: Path, services=None, **overrides):
    """Build and launch the playground on a free loopback port; returns (demo, url).

    ``services``, a function of the settings, makes the app's Services (e.g. with a slow engine)."""
    from supportbot.config import Settings
    from supportbot.ui.app import build_app, launch_options, queue_options

    settings = Settings.load({"data_dir": data_dir, "engine": "offline", **overrides}, environ={}, dotenv_path=None)
    demo = build_app(settings, services(settings) if services else None)
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
