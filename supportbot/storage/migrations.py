"""The schema: every table, created and migrated at start-up, its version kept in the ``meta`` table.

``ensure_schema`` runs once per process and database, in one transaction under a lock that
every process takes (an advisory lock in PostgreSQL; the file's write lock in SQLite), so two
replicas starting at once never both create or migrate: the second waits, then finds the
work done. A database written by newer code (a higher ``schema_version``) is refused with a
message naming it. Versions:

1. the demo shop: customers, orders, the knowledge base and its full-text index;
2. per-conversation sandboxes (``storage.sandbox``); version 1's one shared shop is moved into
   the ``legacy`` sandbox (SQLite only: version 1 never ran elsewhere);
3. conversations, ticket versions and spending counters join the versioned schema (their
   modules used to create them on their own).

The DDL is the subset both backends read alike: ``DOUBLE PRECISION`` (SQLite gives it REAL
affinity; PostgreSQL's ``REAL`` would be a 4-byte float, too coarse for epoch seconds), composite
keys instead of row ids, a ``lower(email)`` index instead of ``COLLATE NOCASE``.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

from supportbot.config import ASSETS_DIR
from supportbot.errors import SupportbotError
from supportbot.storage.db import Connection, Database
from supportbot.storage.demo_data import OrderEntry, read_entries

SCHEMA_VERSION = 3
LEGACY = "legacy"  # the sandbox that version-1 rows (one shared shop) were moved into
_LOCK = "supportbot.schema"
DEFAULT_DEMO = ASSETS_DIR / "demo"

META = "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
SHOP = (
    "CREATE TABLE IF NOT EXISTS customers (id TEXT PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL, "
    "tier TEXT NOT NULL, language TEXT NOT NULL, created_on TEXT NOT NULL)",
    "CREATE UNIQUE INDEX IF NOT EXISTS customers_email ON customers (lower(email))",
    "CREATE TABLE IF NOT EXISTS orders (id TEXT PRIMARY KEY, customer_id TEXT NOT NULL REFERENCES customers(id), "
    "status TEXT NOT NULL, status_detail TEXT, ordered_on TEXT NOT NULL, shipped_on TEXT, eta TEXT, "
    "delivered_on TEXT, cancelled_on TEXT, refunded_on TEXT, carrier TEXT, tracking_number TEXT, "
    "items TEXT NOT NULL, total DOUBLE PRECISION NOT NULL, currency TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS orders_by_customer ON orders (customer_id, ordered_on)",
    "CREATE TABLE IF NOT EXISTS kb_articles (id TEXT PRIMARY KEY, title TEXT NOT NULL, category TEXT NOT NULL, "
    "body TEXT NOT NULL)",
)
SANDBOXES = (
    "CREATE TABLE IF NOT EXISTS sandboxes (id TEXT PRIMARY KEY, created_at DOUBLE PRECISION NOT NULL, "
    "touched_at DOUBLE PRECISION NOT NULL, forked_from TEXT)",
    "CREATE INDEX IF NOT EXISTS sandboxes_touched ON sandboxes (touched_at)",
    "CREATE TABLE IF NOT EXISTS order_changes (sandbox TEXT NOT NULL, order_id TEXT NOT NULL REFERENCES orders(id), "
    "status TEXT NOT NULL, refunded_on TEXT, PRIMARY KEY (sandbox, order_id))",
    "CREATE TABLE IF NOT EXISTS refunds (sandbox TEXT NOT NULL, refund_id INTEGER NOT NULL, "
    "order_id TEXT NOT NULL REFERENCES orders(id), reason TEXT NOT NULL, "
    "outcome TEXT NOT NULL CHECK (outcome IN ('approved', 'denied')), amount DOUBLE PRECISION NOT NULL, "
    "currency TEXT NOT NULL, explanation TEXT NOT NULL, created_at TEXT NOT NULL, PRIMARY KEY (sandbox, refund_id))",
    "CREATE TABLE IF NOT EXISTS escalations (sandbox TEXT NOT NULL, ticket_id TEXT NOT NULL, seq INTEGER NOT NULL, "
    "reason TEXT NOT NULL, priority TEXT NOT NULL, summary TEXT NOT NULL, conversation_id TEXT, "
    "status TEXT NOT NULL DEFAULT 'open', created_at TEXT NOT NULL, PRIMARY KEY (sandbox, ticket_id))",
)
HISTORY = (
    "CREATE TABLE IF NOT EXISTS conversations (id TEXT PRIMARY KEY, created_at DOUBLE PRECISION NOT NULL, "
    "updated_at DOUBLE PRECISION NOT NULL, turns INTEGER NOT NULL, snapshot TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS conversations_updated ON conversations (updated_at)",
    "CREATE TABLE IF NOT EXISTS ticket_versions (conversation_id TEXT NOT NULL, version INTEGER NOT NULL, "
    "created_at DOUBLE PRECISION NOT NULL, ticket TEXT NOT NULL, PRIMARY KEY (conversation_id, version))",
)
COUNTERS = (
    "CREATE TABLE IF NOT EXISTS spend_counters (scope TEXT NOT NULL, day TEXT NOT NULL, used INTEGER NOT NULL, "
    "updated_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (scope, day))",
    "CREATE INDEX IF NOT EXISTS spend_counters_day ON spend_counters (day)",
)
_CONVERSATION_COLUMNS = {"id", "snapshot", "updated_at"}


def ensure_schema(db: Database, demo_dir: Path = DEFAULT_DEMO) -> None:
    """Create or migrate ``db`` to SCHEMA_VERSION (once per process); refuse a database from newer code."""
    if db.schema_version == SCHEMA_VERSION:
        return
    with db.transaction() as conn:
        db.lock(conn, _LOCK)
        conn.execute(META)
        version = stored_version(db, conn)
        if version > SCHEMA_VERSION:
            raise SupportbotError(
                f"{db.name}: the database has schema version {version}, newer than this code knows "
                f"({SCHEMA_VERSION}); upgrade supportbot or point {db.setting} elsewhere"
            )
        if version < 1:
            for statement in (*SHOP, *db.kb_schema()):
                conn.execute(statement)
        if version < 2:
            db.upgrade_v1(conn, LEGACY, _create(SANDBOXES), lambda c, ids: _restore_seeded_orders(c, ids, demo_dir))
            _create(SANDBOXES)(conn)
        if version < 3:
            _check_conversations(db, conn)
            _create((*HISTORY, *COUNTERS))(conn)
        if version < SCHEMA_VERSION:
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('schema_version', ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (str(SCHEMA_VERSION),),
            )
    db.schema_version = SCHEMA_VERSION


def stored_version(db: Database, conn: Connection) -> int:
    """The version recorded in ``meta``; without one, 1 when the shop's tables exist (version 1 kept
    none), else 0 (a new database)."""
    value = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").scalar()
    if value is not None:
        return int(value)
    return 1 if db.columns(conn, "orders") else 0


def _create(statements: tuple[str, ...]):
    def run(conn: Connection) -> None:
        for statement in statements:
            conn.execute(statement)

    return run


def _check_conversations(db: Database, conn: Connection) -> None:
    """A ``conversations`` table that is not ours (another layout) stops start-up rather than being written to."""
    cols = db.columns(conn, "conversations")
    if cols and not _CONVERSATION_COLUMNS <= cols:
        raise SupportbotError(
            f"{db.name}: a 'conversations' table with another layout exists (columns {sorted(cols)}); "
            "supportbot's history owns that table"
        )


def _restore_seeded_orders(conn: Connection, order_ids: list[str], demo_dir: Path) -> None:
    """Undo version 1's in-place refunds: put these orders back as the demo files seed them."""
    seeded = conn.execute("SELECT value FROM meta WHERE key = 'seeded_on'").scalar()
    if seeded is None or not order_ids:
        return
    day = date.fromisoformat(seeded)
    entries = {o.id: o for o in read_entries(demo_dir / "orders.json", OrderEntry, "order")}
    for oid in order_ids:
        entry = entries.get(oid)
        if entry is not None:
            refunded = entry.refunded_days_ago
            conn.execute(
                "UPDATE orders SET status = ?, refunded_on = ? WHERE id = ?",
                (entry.status, None if refunded is None else (day - timedelta(days=refunded)).isoformat(), oid),
            )
