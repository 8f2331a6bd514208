"""The store: the seeded demo shop (customers, orders, knowledge base) and its sandboxes.

It runs on a :class:`~supportbot.storage.db.Database` (SQLite in the data directory, or
PostgreSQL shared by several replicas), whose schema ``storage.migrations`` creates. The demo
data under ``assets/demo`` is validated (see ``supportbot.storage.demo_data``) and seeded on
first use, once, whichever process gets there first; dates in it are day offsets from the
seeding day so the demo stays fresh. The seeded rows are never modified: everything a
conversation changes (refunds, escalations, order status) lives in its sandbox, keyed by a
``sandbox`` column (see ``supportbot.storage.sandbox``), and reads overlay it. Other modules may
keep their own tables in the same database via ``execute`` and ``transaction``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from supportbot.config import ASSETS_DIR
from supportbot.errors import CatalogError
from supportbot.storage import sandbox as sandboxes
from supportbot.storage.db import Connection, Database, sqlite_at
from supportbot.storage.demo_data import CustomerEntry, OrderEntry, load_policy, read_entries, read_kb
from supportbot.storage.migrations import ensure_schema

DEFAULT_ASSETS = ASSETS_DIR
ORDER_STATUSES = ("processing", "shipped", "delivered", "delayed", "cancelled", "refunded")
KB_CATEGORIES = (
    "shipping",
    "returns",
    "refunds",
    "warranty",
    "account",
    "payments",
    "privacy",
    "troubleshooting",
)
# Dropped from KB queries: they match every article and only dilute bm25 ranking.
_STOPWORDS = frozenset(
    "a an and are as at be but by can do does for from get got have how i if in is it its me my "
    "no not of on or our so that the their there this to was we what when where which who why "
    "will with would you your".split()
)
_MAX_QUERY_TERMS = 24
QUERY_CHARS = 2000

# Order columns a sandbox may change; reads take them from order_changes when a row exists.
_OVERLAY = ("status", "refunded_on")
_ORDER_COLUMNS = (
    "id",
    "customer_id",
    "status",
    "status_detail",
    "ordered_on",
    "shipped_on",
    "eta",
    "delivered_on",
    "cancelled_on",
    "refunded_on",
    "carrier",
    "tracking_number",
    "items",
    "total",
    "currency",
)
# CASE, not COALESCE: a sandbox may set a column back to NULL.
_ORDER_SELECT = (
    "SELECT "
    + ", ".join(
        f"CASE WHEN c.order_id IS NULL THEN o.{col} ELSE c.{col} END AS {col}" if col in _OVERLAY else f"o.{col}"
        for col in _ORDER_COLUMNS
    )
    + " FROM orders o LEFT JOIN order_changes c ON c.order_id = o.id AND c.sandbox = ?"
)
SEEDED = ""  # the sandbox key that reads the seeded data as it is; never written


def query_terms(text: str) -> list[str]:
    """The words of free text worth searching for: lower-cased, stopwords dropped (unless that leaves none),
    each once, at most _MAX_QUERY_TERMS. Plain ``\\w+`` tokens, so no backend's query syntax can hide in them.

    Reads the first ``QUERY_CHARS`` characters and skips "words" over 64 characters (a pasted
    token or blob is no search term), so a 1 MB query costs a slice."""
    tokens = [t for t in re.findall(r"\w+", text[:QUERY_CHARS].lower()) if len(t) <= 64]
    useful = [t for t in tokens if t not in _STOPWORDS] or tokens
    return list(dict.fromkeys(useful))[:_MAX_QUERY_TERMS]


def normalize_order_id(order_id: str) -> str:
    """'#48291', ' 48291 ', 'order #48291' -> '48291'."""
    text = order_id.strip()
    text = re.sub(r"(?i)^order\s*", "", text)
    return text.lstrip("#").strip()


class Store:
    """The seeded demo shop and every conversation's sandbox of it, in one database."""

    def __init__(self, db: Database | Path | str, *, assets_dir: Path | None = None, today: date | None = None) -> None:
        # A path opens (and owns) a SQLite file there; a Database is shared, and closed by its opener.
        self._owns_db = not isinstance(db, Database)
        self.db = sqlite_at(db) if self._owns_db else db
        self._demo_dir = (assets_dir or DEFAULT_ASSETS) / "demo"
        self._today = today
        try:
            self.policy = load_policy(self._demo_dir)
            ensure_schema(self.db, self._demo_dir)
            self._seed_if_empty()
        except BaseException:
            if self._owns_db:
                self.db.close()  # a bad asset must not leak an open handle on the file
            raise

    @property
    def today(self) -> date:
        """The pinned day (tests) or the real current day."""
        return self._today or date.today()

    # --- shared helpers for other modules -------------------------------------------------

    def transaction(self) -> AbstractContextManager[Connection]:
        """The database's write transaction (see ``Database.transaction``); nested calls join the outer one."""
        return self.db.transaction()

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Run one parameterised statement (in this thread's open transaction, if any); rows as dicts."""
        return self.db.execute(sql, params)

    def close(self) -> None:
        """Close the database when this store opened it (idempotent)."""
        if self._owns_db:
            self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- seeding ---------------------------------------------------------------------------

    def _seed_if_empty(self) -> None:
        with self.transaction() as conn:
            # Checked under the seeding lock, inside the write transaction: two processes cannot both seed.
            self.db.lock(conn, "supportbot.seed")
            if conn.execute("SELECT 1 AS seeded FROM meta WHERE key = 'seeded_on'").fetchone():
                return
            self._seed(conn)

    def _seed(self, conn: Connection) -> None:
        customers = read_entries(self._demo_dir / "customers.json", CustomerEntry, "customer")
        orders = read_entries(self._demo_dir / "orders.json", OrderEntry, "order")
        articles = read_kb(self._demo_dir / "kb")
        known = {c.id for c in customers}
        for i, order in enumerate(orders):
            if order.customer_id not in known:
                raise CatalogError(
                    f"orders.json[{i}] (order {order.id})", f"customer_id: unknown customer {order.customer_id}"
                )
        today = self.today

        def ago(days: int | None) -> str | None:
            return None if days is None else (today - timedelta(days=days)).isoformat()

        conn.executemany(
            "INSERT INTO customers (id, name, email, tier, language, created_on) VALUES (?, ?, ?, ?, ?, ?)",
            [(c.id, c.name, c.email, c.tier, c.language, ago(c.created_days_ago)) for c in customers],
        )
        conn.executemany(
            f"INSERT INTO orders ({', '.join(_ORDER_COLUMNS)}) VALUES ({', '.join('?' * len(_ORDER_COLUMNS))})",
            [
                (
                    o.id,
                    o.customer_id,
                    o.status,
                    o.status_detail,
                    ago(o.ordered_days_ago),
                    ago(o.shipped_days_ago),
                    None if o.eta_days is None else ago(-o.eta_days),
                    ago(o.delivered_days_ago),
                    ago(o.cancelled_days_ago),
                    ago(o.refunded_days_ago),
                    o.carrier,
                    o.tracking_number,
                    json.dumps([i.model_dump() for i in o.items]),
                    o.total,
                    o.currency,
                )
                for o in orders
            ],
        )
        conn.executemany(
            "INSERT INTO kb_articles (id, title, category, body) VALUES (?, ?, ?, ?)",
            [(a.id, a.title, a.category, a.body) for a in articles],
        )
        self.db.index_kb(conn)
        conn.execute("INSERT INTO meta (key, value) VALUES ('seeded_on', ?)", (today.isoformat(),))

    # --- customers and orders ----------------------------------------------------------------

    @staticmethod
    def _order(row: Mapping[str, Any]) -> dict[str, Any]:
        order = dict(row)
        order["items"] = json.loads(order["items"])
        return order

    def get_order(self, order_id: str, *, sandbox: str = SEEDED) -> dict[str, Any] | None:
        """The order with this id ('#48291' and '48291' both work) as ``sandbox`` sees it, or None."""
        rows = self.execute(f"{_ORDER_SELECT} WHERE o.id = ?", (sandbox, normalize_order_id(order_id)))
        return self._order(rows[0]) if rows else None

    def get_customer(self, *, email: str | None = None, customer_id: str | None = None) -> dict[str, Any] | None:
        """A customer by email (case-insensitive) or id; both given must match the same customer."""
        if email is None and customer_id is None:
            raise ValueError("get_customer needs email or customer_id")
        clauses, params = [], []
        if email is not None:
            clauses.append("lower(email) = lower(?)")
            params.append(email.strip())
        if customer_id is not None:
            clauses.append("id = ?")
            params.append(customer_id.strip().upper())
        rows = self.execute(f"SELECT * FROM customers WHERE {' AND '.join(clauses)}", params)
        return rows[0] if rows else None

    def orders_for_customer(self, customer_id: str, limit: int = 5, *, sandbox: str = SEEDED) -> list[dict[str, Any]]:
        """The customer's orders as ``sandbox`` sees them, newest first."""
        rows = self.execute(
            f"{_ORDER_SELECT} WHERE o.customer_id = ? ORDER BY o.ordered_on DESC, o.id DESC LIMIT ?",
            (sandbox, customer_id.strip().upper(), limit),
        )
        return [self._order(r) for r in rows]

    # --- sandboxes -----------------------------------------------------------------------------

    def sandbox(self, key: str, *, fork_of: str | None = None) -> sandboxes.Sandbox:
        """Open (create or touch) the sandbox ``key``; a new one forked from ``fork_of`` starts as its copy."""
        sandboxes.open_sandbox(self, key, fork_of)
        return sandboxes.Sandbox(self, key)

    def purge_sandboxes(self, before: float) -> int:
        """Delete sandboxes untouched since ``before`` (epoch seconds) with all they changed; returns how many."""
        return sandboxes.purge(self, before)

    # --- knowledge base ------------------------------------------------------------------------

    def search_kb(self, query: str, top_k: int = 3) -> list[dict[str, Any]]:
        """Best-matching articles by bm25, title > category > body: ``{id, title, category, snippet, score}``,
        higher score first (the backends stem English a little differently; the ranking is the same)."""
        terms = query_terms(query)
        return self.db.search_kb(terms, max(1, min(top_k, 50))) if terms else []
