"""SQLite store: the seeded demo shop (customers, orders, knowledge base) and its sandboxes.

One connection in WAL mode, shared by asyncio handlers and worker threads behind a
re-entrant lock. The demo data under ``assets/demo`` is validated (see
``supportbot.storage.demo_data``) and seeded on first use; dates in it are day offsets from
the seeding day so the demo stays fresh. The seeded rows are never modified: everything a
conversation changes (refunds, escalations, order status) lives in its sandbox, keyed by a
``sandbox`` column (see ``supportbot.storage.sandbox``), and reads overlay it.
Other modules may keep their own tables in the same file via ``execute`` and
``transaction``. The data model is plain SQL (no SQLite-only column types or row ids), so a
PostgreSQL backend can implement the same methods; FTS5 for the knowledge base is the one
SQLite-specific part.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from supportbot.config import ASSETS_DIR
from supportbot.errors import CatalogError, SupportbotError
from supportbot.storage import sandbox as sandboxes
from supportbot.storage.demo_data import CustomerEntry, OrderEntry, load_policy, read_entries, read_kb

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

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS customers (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL UNIQUE COLLATE NOCASE,
    tier TEXT NOT NULL, language TEXT NOT NULL, created_on TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS orders (
    id TEXT PRIMARY KEY, customer_id TEXT NOT NULL REFERENCES customers(id), status TEXT NOT NULL,
    status_detail TEXT, ordered_on TEXT NOT NULL, shipped_on TEXT, eta TEXT, delivered_on TEXT,
    cancelled_on TEXT, refunded_on TEXT, carrier TEXT, tracking_number TEXT,
    items TEXT NOT NULL, total REAL NOT NULL, currency TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS orders_by_customer ON orders(customer_id, ordered_on);
CREATE TABLE IF NOT EXISTS kb_articles (
    id TEXT PRIMARY KEY, title TEXT NOT NULL, category TEXT NOT NULL, body TEXT NOT NULL);
CREATE VIRTUAL TABLE IF NOT EXISTS kb_fts USING fts5(
    id UNINDEXED, title, category, body, tokenize = 'porter unicode61 remove_diacritics 2');
"""
# The sandbox tables (see supportbot.storage.sandbox) are created after a possible migration
# of the version-1 refunds and escalations tables, which had no sandbox column.
SCHEMA_VERSION = 2
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


def fts_query(text: str) -> str:
    """Turn free text into a safe FTS5 query: quoted word tokens joined by OR ('' if none).

    Reads the first ``QUERY_CHARS`` characters and skips "words" over 64 characters (a pasted
    token or blob is no search term), so a 1 MB query costs a slice."""
    tokens = [t for t in re.findall(r"\w+", text[:QUERY_CHARS].lower()) if len(t) <= 64]
    useful = [t for t in tokens if t not in _STOPWORDS] or tokens
    unique = list(dict.fromkeys(useful))[:_MAX_QUERY_TERMS]
    # \w+ tokens hold no double quotes, so quoting makes each a literal term.
    return " OR ".join(f'"{t}"' for t in unique)


def normalize_order_id(order_id: str) -> str:
    """'#48291', ' 48291 ', 'order #48291' -> '48291'."""
    text = order_id.strip()
    text = re.sub(r"(?i)^order\s*", "", text)
    return text.lstrip("#").strip()


class Store:
    """The seeded demo shop and every conversation's sandbox of it, in one SQLite file."""

    def __init__(self, path: Path, *, assets_dir: Path | None = None, today: date | None = None) -> None:
        self.path = Path(path)
        self._demo_dir = (assets_dir or DEFAULT_ASSETS) / "demo"
        self._today = today
        self._lock = threading.RLock()
        self._depth = 0  # transaction nesting; only touched while holding the lock
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we issue BEGIN ourselves, so transactions are explicit.
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=10)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode=WAL")
        # WAL with NORMAL stays consistent after a crash and skips an fsync per commit.
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("PRAGMA foreign_keys=ON")
        try:
            self._conn.executescript(_SCHEMA)
            self.policy = load_policy(self._demo_dir)
            self._migrate()
            self._seed_if_empty()
        except BaseException:
            self._conn.close()  # a bad asset must not leak an open handle on the file
            raise

    @property
    def today(self) -> date:
        """The pinned day (tests) or the real current day."""
        return self._today or date.today()

    # --- shared helpers for other modules -------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Hold the lock for BEGIN IMMEDIATE … COMMIT; roll back on error. Nested calls join the outer one."""
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield self._conn
                finally:
                    self._depth -= 1
                return
            self._conn.execute("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            else:
                self._conn.execute("COMMIT")
            finally:
                self._depth = 0

    def execute(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> list[dict[str, Any]]:
        """Run one parameterised statement under the lock; return its rows as dicts."""
        with self._lock:
            return [dict(row) for row in self._conn.execute(sql, params).fetchall()]

    def close(self) -> None:
        """Close the connection (idempotent)."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- schema ----------------------------------------------------------------------------

    def _migrate(self) -> None:
        """Bring the sandbox tables to SCHEMA_VERSION; refuse a database written by newer code."""
        with self.transaction() as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            version = int(row[0]) if row else 1
            if version > SCHEMA_VERSION:
                raise SupportbotError(
                    f"{self.path}: the database has schema version {version}, newer than this code knows "
                    f"({SCHEMA_VERSION}); upgrade supportbot or point SUPPORTBOT_DATA_DIR elsewhere"
                )
            legacy = sandboxes.rename_v1_tables(conn) if version < SCHEMA_VERSION else False
            for statement in sandboxes.SCHEMA:
                conn.execute(statement)
            if legacy:
                sandboxes.migrate_v1_rows(conn, self._restore_seeded_orders)
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('schema_version', ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (str(SCHEMA_VERSION),),
            )

    def _restore_seeded_orders(self, conn: sqlite3.Connection, order_ids: list[str]) -> None:
        """Undo version 1's in-place refunds: put these orders back as the demo files seed them."""
        seeded = conn.execute("SELECT value FROM meta WHERE key = 'seeded_on'").fetchone()
        if seeded is None or not order_ids:
            return
        day = date.fromisoformat(seeded[0])
        entries = {o.id: o for o in read_entries(self._demo_dir / "orders.json", OrderEntry, "order")}
        for oid in order_ids:
            entry = entries.get(oid)
            if entry is not None:
                refunded = entry.refunded_days_ago
                conn.execute(
                    "UPDATE orders SET status = ?, refunded_on = ? WHERE id = ?",
                    (entry.status, None if refunded is None else (day - timedelta(days=refunded)).isoformat(), oid),
                )

    # --- seeding ---------------------------------------------------------------------------

    def _seed_if_empty(self) -> None:
        with self.transaction() as conn:
            # Checked inside the write transaction so two processes cannot both seed.
            if conn.execute("SELECT 1 FROM meta WHERE key = 'seeded_on'").fetchone():
                return
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
                "INSERT INTO customers VALUES (?, ?, ?, ?, ?, ?)",
                [(c.id, c.name, c.email, c.tier, c.language, ago(c.created_days_ago)) for c in customers],
            )
            conn.executemany(
                "INSERT INTO orders VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
            rows = [(a.id, a.title, a.category, a.body) for a in articles]
            conn.executemany("INSERT INTO kb_articles VALUES (?, ?, ?, ?)", rows)
            conn.executemany("INSERT INTO kb_fts (id, title, category, body) VALUES (?, ?, ?, ?)", rows)
            conn.execute("INSERT INTO meta VALUES ('seeded_on', ?)", (today.isoformat(),))

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
            clauses.append("email = ? COLLATE NOCASE")
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
        """Best-matching articles by bm25: ``{id, title, category, snippet, score}``, higher score first."""
        match = fts_query(query)
        if not match:
            return []
        # bm25 weights per column (id, title, category, body): a title hit counts most.
        rows = self.execute(
            "SELECT id, title, category, snippet(kb_fts, 3, '**', '**', '…', 24) AS snippet, "
            "bm25(kb_fts, 0.0, 4.0, 2.0, 1.0) AS rank FROM kb_fts WHERE kb_fts MATCH ? "
            "ORDER BY rank LIMIT ?",
            (match, max(1, min(top_k, 50))),  # LIMIT -1 would mean "no limit" in SQLite
        )
        for row in rows:
            row["score"] = round(-row.pop("rank"), 3)  # bm25 is lower-is-better; flip it
        return rows
