"""Per-conversation sandboxes: a copy-on-write view of the demo shop.

Strangers share one database on a public Space, so nothing one conversation does may show in
another: a refund, an escalation or an order's new status is stored with the conversation's
``sandbox`` key, and every read overlays that sandbox on the seeded rows, which are never
modified. A new conversation gets an empty sandbox, so each example behaves as scripted for
every visitor, every time. A reloaded (``?c=``) conversation that continues under a new id
starts from a *copy* of its original's sandbox: it sees the refunds it remembers, and nothing
it does reaches the original.

Tables (created by ``storage.migrations``; composite keys, no row ids): ``sandboxes`` (one row
per sandbox, for retention), ``order_changes`` (the overlaid order columns), ``refunds`` and
``escalations`` (both keyed by sandbox). Numbers a conversation sees (refund ids, queue
positions) count within its sandbox only. A sandbox's writes are serialised by a lock on its
row in ``sandboxes``, taken first in each write transaction: under PostgreSQL, replicas
writing to one sandbox take turns; under SQLite the file's write lock already does.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, timezone
from typing import TYPE_CHECKING, Any, Literal

from supportbot.storage.db import Connection
from supportbot.storage.migrations import LEGACY

if TYPE_CHECKING:
    from supportbot.storage.demo_data import Policy
    from supportbot.storage.store import Store

__all__ = ["LEGACY", "MAX_KEY_CHARS", "Sandbox", "open_sandbox", "purge"]
MAX_KEY_CHARS = 100

# What a fork copies, and what a purge deletes, besides the sandboxes row itself.
_TABLES = {
    "order_changes": ("order_id", "status", "refunded_on"),
    "refunds": ("refund_id", "order_id", "reason", "outcome", "amount", "currency", "explanation", "created_at"),
    "escalations": (
        "ticket_id",
        "seq",
        "reason",
        "priority",
        "summary",
        "conversation_id",
        "status",
        "created_at",
    ),
}


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _check_key(key: str) -> str:
    if not isinstance(key, str) or not key.strip() or len(key) > MAX_KEY_CHARS:
        raise ValueError(f"a sandbox key is a non-empty string of at most {MAX_KEY_CHARS} characters")
    return key


def open_sandbox(store: Store, key: str, fork_of: str | None = None, now: float | None = None) -> bool:
    """Create ``key`` (as a copy of ``fork_of``'s state when given) or touch it; True when it was created."""
    _check_key(key)
    now = time.time() if now is None else now
    with store.transaction() as conn:
        # ON CONFLICT rather than check-then-insert: two replicas opening one new key cannot both create it.
        created = conn.execute(
            "INSERT INTO sandboxes (id, created_at, touched_at, forked_from) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (id) DO NOTHING",
            (key, now, now, fork_of),
        ).rowcount
        if not created:
            conn.execute("UPDATE sandboxes SET touched_at = ? WHERE id = ?", (now, key))
            return False
        if fork_of and fork_of != key:
            for table, cols in _TABLES.items():
                names = ", ".join(cols)
                conn.execute(
                    f"INSERT INTO {table} (sandbox, {names}) SELECT ?, {names} FROM {table} WHERE sandbox = ?",
                    (key, fork_of),
                )
    return True


def purge(store: Store, before: float) -> int:
    """Delete sandboxes untouched since ``before`` and every row they own (orphans too)."""
    with store.transaction() as conn:
        gone = conn.execute("SELECT COUNT(*) AS n FROM sandboxes WHERE touched_at < ?", (before,)).scalar()
        conn.execute("DELETE FROM sandboxes WHERE touched_at < ?", (before,))
        for table in _TABLES:
            conn.execute(f"DELETE FROM {table} WHERE sandbox NOT IN (SELECT id FROM sandboxes)")
    return int(gone)


# --- the view the tools use ------------------------------------------------------------------------


class Sandbox:
    """One conversation's view of the demo shop: seeded data overlaid with its own changes."""

    def __init__(self, store: Store, key: str) -> None:
        self.store = store
        self.key = _check_key(key)

    @property
    def today(self) -> date:
        """The store's day (pinned in tests)."""
        return self.store.today

    @property
    def policy(self) -> Policy:
        """The refund and returns policy."""
        return self.store.policy

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A write transaction on this sandbox (a decision and its record commit together), its row locked
        first: what the transaction reads cannot change under it from another thread or replica."""
        with self.store.transaction() as conn:
            self._lock(conn)
            yield conn

    def _lock(self, conn: Connection) -> None:
        """Touch this sandbox's row: under PostgreSQL the row lock serialises writers of one sandbox until
        commit, so the next refund id and queue number (MAX + 1) cannot be taken twice, nor one order be
        refunded twice; under SQLite the write transaction already does. The touch also keeps retention
        from expiring a sandbox in use, and recreates one that retention removed meanwhile."""
        now = time.time()
        conn.execute(
            "INSERT INTO sandboxes (id, created_at, touched_at) VALUES (?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET touched_at = excluded.touched_at",
            (self.key, now, now),
        )

    # --- reads -------------------------------------------------------------------------------

    def get_order(self, order_id: str) -> dict[str, Any] | None:
        """The order as this sandbox sees it, or None."""
        return self.store.get_order(order_id, sandbox=self.key)

    def orders_for_customer(self, customer_id: str, limit: int = 5) -> list[dict[str, Any]]:
        """The customer's orders as this sandbox sees them, newest first."""
        return self.store.orders_for_customer(customer_id, limit, sandbox=self.key)

    def get_customer(self, *, email: str | None = None, customer_id: str | None = None) -> dict[str, Any] | None:
        """A customer (customers are seeded only: no sandbox changes them)."""
        return self.store.get_customer(email=email, customer_id=customer_id)

    def search_kb(self, query: str, top_k: int = 3) -> list[dict[str, Any]]:
        """Knowledge-base search (seeded only)."""
        return self.store.search_kb(query, top_k)

    # --- refunds -----------------------------------------------------------------------------

    def record_refund(
        self, order_id: str, *, reason: str, outcome: Literal["approved", "denied"], amount: float, explanation: str
    ) -> dict[str, Any]:
        """Store a refund decision in this sandbox; an approved one marks the order refunded here only."""
        from supportbot.storage.store import normalize_order_id

        if outcome not in ("approved", "denied"):
            raise ValueError(f"outcome must be 'approved' or 'denied', not {outcome!r}")
        oid = normalize_order_id(order_id)
        with self.transaction() as conn:
            order = conn.execute("SELECT currency FROM orders WHERE id = ?", (oid,)).fetchone()
            if order is None:
                raise KeyError(f"no order {oid}")
            created = _now_iso()
            refund_id = conn.execute(
                "SELECT COALESCE(MAX(refund_id), 0) + 1 AS next FROM refunds WHERE sandbox = ?", (self.key,)
            ).scalar()
            conn.execute(
                "INSERT INTO refunds (sandbox, refund_id, order_id, reason, outcome, amount, currency, explanation, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (self.key, refund_id, oid, reason, outcome, amount, order["currency"], explanation, created),
            )
            if outcome == "approved":
                conn.execute(
                    "INSERT INTO order_changes (sandbox, order_id, status, refunded_on) VALUES (?, ?, 'refunded', ?) "
                    "ON CONFLICT (sandbox, order_id) DO UPDATE SET status = excluded.status, "
                    "refunded_on = excluded.refunded_on",
                    (self.key, oid, self.today.isoformat()),
                )
        return {
            "refund_id": refund_id,
            "order_id": oid,
            "reason": reason,
            "outcome": outcome,
            "amount": amount,
            "currency": order["currency"],
            "explanation": explanation,
            "created_at": created,
        }

    def refunds_for_order(self, order_id: str) -> list[dict[str, Any]]:
        """Every refund decision this sandbox recorded for an order, oldest first."""
        from supportbot.storage.store import normalize_order_id

        return self.store.execute(
            "SELECT refund_id, order_id, reason, outcome, amount, currency, explanation, created_at "
            "FROM refunds WHERE sandbox = ? AND order_id = ? ORDER BY refund_id",
            (self.key, normalize_order_id(order_id)),
        )

    # --- escalations -------------------------------------------------------------------------

    def create_escalation(
        self, reason: str, priority: str, summary: str, conversation_id: str | None = None
    ) -> dict[str, Any]:
        """Open a hand-off ticket; its queue position counts the open tickets of this sandbox only."""
        with self.transaction() as conn:
            counts = conn.execute(
                "SELECT COUNT(CASE WHEN status = 'open' THEN 1 END) AS ahead, COALESCE(MAX(seq), 0) AS last "
                "FROM escalations WHERE sandbox = ?",
                (self.key,),
            ).fetchone()
            ahead, last = int(counts["ahead"]), int(counts["last"])
            ticket_id = f"ESC-{secrets.token_hex(3).upper()}"
            # 16M ids per sandbox; checked inside the write transaction, so no unique-violation handling.
            while conn.execute(
                "SELECT 1 AS taken FROM escalations WHERE sandbox = ? AND ticket_id = ?", (self.key, ticket_id)
            ).fetchone():
                ticket_id = f"ESC-{secrets.token_hex(3).upper()}"
            created = _now_iso()
            conn.execute(
                "INSERT INTO escalations (sandbox, ticket_id, seq, reason, priority, summary, conversation_id, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (self.key, ticket_id, last + 1, reason, priority, summary, conversation_id, created),
            )
        return {"ticket_id": ticket_id, "queue_position": ahead + 1, "priority": priority, "created_at": created}

    def list_escalations(self, status: str | None = None) -> list[dict[str, Any]]:
        """This sandbox's escalations oldest first, optionally only those with ``status`` ('open' or 'closed')."""
        cols = "ticket_id, reason, priority, summary, conversation_id, status, created_at"
        if status is None:
            return self.store.execute(f"SELECT {cols} FROM escalations WHERE sandbox = ? ORDER BY seq", (self.key,))
        return self.store.execute(
            f"SELECT {cols} FROM escalations WHERE sandbox = ? AND status = ? ORDER BY seq", (self.key, status)
        )

    def close_escalation(self, ticket_id: str) -> bool:
        """Mark an escalation of this sandbox closed; False when it has no open ticket with that id."""
        with self.transaction() as conn:
            cur = conn.execute(
                "UPDATE escalations SET status = 'closed' WHERE sandbox = ? AND ticket_id = ? AND status = 'open'",
                (self.key, ticket_id),
            )
            return cur.rowcount == 1
