"""Shared fixtures: every test gets its own data directory; nothing touches the repo's files."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from supportbot.store import Store

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
