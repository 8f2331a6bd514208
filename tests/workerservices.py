"""Services for turn-worker processes in tests: importable by name, so a worker can build them."""

from __future__ import annotations

from supportbot.config import Settings
from supportbot.engine import OfflineEngine
from supportbot.services import Services


def slow(settings: Settings) -> Services:
    """An offline engine that streams slowly enough to stop a turn, or overlap two, midway."""
    return Services.create(settings, OfflineEngine(stream_delay_s=0.05))
