"""Housekeeping: what a long-running public app must delete so disk and database stay bounded.

* ``purge``: retention (``SUPPORTBOT_RETENTION_DAYS``; 30 days by default on a Space) applied to
  every table: conversations and ticket versions, sandboxes with their refunds, escalations and
  order changes; plus spending counters whose day is over, whatever the retention.
* ``ExportFiles``: export downloads are written under one temporary root and removed a few
  minutes later: by then Gradio has copied them into its own cache, which ``delete_cache``
  (``ui.app.CACHE_SWEEP``) empties, uploads included, within the hour.
* ``Sweeper``: a daemon thread that runs both on a timer, so nothing waits for the next turn.

Clocks are injectable, so tests move time instead of waiting for it.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from supportbot.services import Services

DAY_S = 86_400
# Gradio has copied an export into its cache by the time the handler's event completes; the
# originals are kept a little longer only so a slow postprocess never finds them gone.
EXPORT_TTL_S = 300
SWEEP_EVERY_S = 60
PURGE_EVERY_S = 3600


class ExportFiles:
    """Directories of export files under ``root``, each removed once older than ``ttl_s``."""

    def __init__(
        self, root: Path | None = None, *, ttl_s: float = EXPORT_TTL_S, clock: Callable[[], float] = time.time
    ) -> None:
        self.root = Path(root or Path(tempfile.gettempdir()) / "supportbot-exports")
        self.ttl_s = ttl_s
        self.clock = clock

    def new_dir(self) -> Path:
        """A fresh directory for one export; stale ones are swept first."""
        self.sweep()
        self.root.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix="export-", dir=self.root))

    def sweep(self) -> int:
        """Remove export directories older than the TTL (by modification time); returns how many went."""
        if not self.root.is_dir():
            return 0
        cutoff = self.clock() - self.ttl_s
        gone = 0
        for path in self.root.iterdir():
            try:
                if path.stat().st_mtime < cutoff:
                    shutil.rmtree(path) if path.is_dir() else path.unlink()
                    gone += 1
            except FileNotFoundError:  # another process or thread swept it first
                continue
        return gone


def purge(services: Services, now: float | None = None) -> dict[str, int]:
    """Apply retention to every table and drop finished counter days; returns what went, per kind."""
    now = time.time() if now is None else now
    days = services.settings.retention_days
    gone = {"conversations": 0, "sandboxes": 0}
    if days:
        gone["conversations"] = services.history.purge_older_than(days, now=now)
        gone["sandboxes"] = services.store.purge_sandboxes(now - days * DAY_S)
    gone["counters"] = services.counters.purge(now)
    gone["exports"] = services.exports.sweep()
    return gone


class Sweeper:
    """Runs ``purge`` every ``purge_every_s`` and the export sweep every ``every_s``, on a daemon thread."""

    def __init__(self, services: Services, *, every_s: float = SWEEP_EVERY_S, purge_every_s: float = PURGE_EVERY_S):
        self.services = services
        self.every_s = every_s
        self.purge_every_s = purge_every_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_purge = float("-inf")

    def start(self) -> Sweeper:
        """Start the thread (once)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="supportbot-housekeeping", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the thread at its next wake-up."""
        self._stop.set()

    def tick(self) -> None:
        """One round: sweep exports; purge when the last purge is older than ``purge_every_s``."""
        if time.monotonic() - self._last_purge >= self.purge_every_s:
            self._last_purge = time.monotonic()
            purge(self.services)
        else:
            self.services.exports.sweep()

    def _run(self) -> None:
        # The app purges once at start-up itself; the first round here comes one interval later.
        while not self._stop.wait(self.every_s):
            try:
                self.tick()
            except Exception as exc:  # noqa: BLE001 - housekeeping must outlive a bad round; say what failed
                print(f"supportbot: housekeeping failed: {type(exc).__name__}: {exc}", file=sys.stderr)
