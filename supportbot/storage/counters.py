"""Daily request counters in the database: per visitor and for the whole app.

They live in the store's database, so a restart, a new browser session or another replica on
the same database (PostgreSQL) does not reset them. A day is a UTC calendar day; its counters
reset at 00:00 UTC and are purged once it is over. ``take`` is a conditional, atomic increment
of every scope at once (all or none, inside one write transaction): concurrent turns, from any
number of threads or replicas, can never take more than a limit allows. ``add`` is
unconditional: it settles the attempts the SDK made beyond the one taken (retries), which is the
documented, bounded overshoot.

Why no update is lost: each increment is one ``UPDATE ... SET used = used + n WHERE used + n <=
limit``. PostgreSQL locks the row for it and, when another transaction changed the row first,
re-evaluates the condition on the committed value (SQLite runs one writer at a time). Scopes
are always written in sorted order, so two turns locking the same rows cannot deadlock.

Visitors are stored as salted hashes (HMAC-SHA256 with a random salt kept in ``meta``, created
once by whichever process gets there first, so every replica hashes alike), never as addresses
or account names.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from supportbot.storage.migrations import ensure_schema
from supportbot.storage.store import Store

APP_SCOPE = "app"


@dataclass(frozen=True)
class Refusal:
    """A scope that had no room: how much it had used of what it allows."""

    scope: str
    used: int
    allowed: int


class SpendCounters:
    """Atomic daily counters keyed by scope (``app`` or a hashed visitor); safe across threads and processes."""

    def __init__(self, store: Store, *, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock
        ensure_schema(store.db)
        with store.transaction() as conn:
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('visitor_salt', ?) ON CONFLICT (key) DO NOTHING",
                (secrets.token_hex(32),),
            )
            self._salt = bytes.fromhex(conn.execute("SELECT value FROM meta WHERE key = 'visitor_salt'").scalar())

    # --- keys and windows --------------------------------------------------------------------

    def visitor_scope(self, identity: str) -> str:
        """The stored key for a visitor identity ('ip:…' or 'hf:…'): a salted hash, never the identity itself."""
        digest = hmac.new(self._salt, identity.encode("utf-8", "replace"), hashlib.sha256).hexdigest()
        return f"visitor:{digest[:32]}"

    def day(self, now: float | None = None) -> str:
        """The current counting window: the UTC date."""
        return datetime.fromtimestamp(self.clock() if now is None else now, timezone.utc).date().isoformat()

    def resets_at(self, now: float | None = None) -> datetime:
        """When the current window ends (the next 00:00 UTC)."""
        today = datetime.fromisoformat(self.day(now)).replace(tzinfo=timezone.utc)
        return today + timedelta(days=1)

    # --- counting ----------------------------------------------------------------------------

    def take(self, limits: Sequence[tuple[str, int]], n: int = 1) -> Refusal | None:
        """Add ``n`` to every ``(scope, limit)`` if each stays within its limit; else change nothing and
        return the first scope that had no room."""
        if not limits:
            return None
        day, now = self.day(), self.clock()
        refused: dict[str, Refusal] = {}
        try:
            with self.store.transaction() as conn:
                for scope, allowed in sorted(limits):
                    conn.execute(
                        "INSERT INTO spend_counters (scope, day, used, updated_at) VALUES (?, ?, 0, ?) "
                        "ON CONFLICT (scope, day) DO NOTHING",
                        (scope, day, now),
                    )
                    cur = conn.execute(
                        "UPDATE spend_counters SET used = used + ?, updated_at = ? "
                        "WHERE scope = ? AND day = ? AND used + ? <= ?",
                        (n, now, scope, day, n, allowed),
                    )
                    if cur.rowcount != 1:
                        used = conn.execute(
                            "SELECT used FROM spend_counters WHERE scope = ? AND day = ?", (scope, day)
                        ).scalar()
                        refused[scope] = Refusal(scope, int(used), allowed)
                if refused:
                    raise _RollBack
        except _RollBack:
            return next(refused[scope] for scope, _ in limits if scope in refused)
        return None

    def add(self, scopes: Sequence[str], n: int) -> None:
        """Add ``n`` to every scope unconditionally (attempts already made cannot be refused)."""
        if n <= 0 or not scopes:
            return
        day, now = self.day(), self.clock()
        with self.store.transaction() as conn:
            for scope in sorted(scopes):
                conn.execute(
                    "INSERT INTO spend_counters (scope, day, used, updated_at) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (scope, day) DO UPDATE SET used = spend_counters.used + excluded.used, "
                    "updated_at = excluded.updated_at",
                    (scope, day, n, now),
                )

    def used(self, scopes: Sequence[str]) -> dict[str, int]:
        """Requests counted today per scope (0 when none)."""
        day = self.day()
        out = dict.fromkeys(scopes, 0)
        for scope in scopes:
            rows = self.store.execute("SELECT used FROM spend_counters WHERE scope = ? AND day = ?", (scope, day))
            if rows:
                out[scope] = int(rows[0]["used"])
        return out

    def purge(self, now: float | None = None) -> int:
        """Delete the counters of days that are over; returns how many rows went."""
        today = self.day(now)
        with self.store.transaction() as conn:
            return conn.execute("DELETE FROM spend_counters WHERE day < ?", (today,)).rowcount


class _RollBack(Exception):
    """Raised inside a transaction to undo the scopes already taken."""
