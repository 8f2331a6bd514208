"""The SQLite backend: one file in the data directory, one connection, one process's worth of traffic.

One connection in WAL mode, shared by asyncio handlers and worker threads behind a re-entrant
lock; ``BEGIN IMMEDIATE`` takes the file's write lock, so a write transaction is serialised
against every other writer, in this process or another on the same file (``lock`` has nothing
left to do). The knowledge base is indexed by FTS5 and ranked by bm25. This module also holds
the one upgrade only SQLite needs: databases from version 1 (one shared shop), which only ever
ran here.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from supportbot.storage.db import Connection, Database

_KB_SCHEMA = (
    "CREATE VIRTUAL TABLE IF NOT EXISTS kb_fts USING fts5("
    "id UNINDEXED, title, category, body, tokenize = 'porter unicode61 remove_diacritics 2')",
)


def _dict_row(cursor: sqlite3.Cursor, row: tuple[Any, ...]) -> dict[str, Any]:
    return {d[0]: value for d, value in zip(cursor.description, row, strict=True)}


def fts_query(terms: Sequence[str]) -> str:
    """An FTS5 query matching any of ``terms`` ('' if none): each quoted, so it is a literal term."""
    # Terms are \\w+ tokens (see store.query_terms): they hold no double quote to escape.
    return " OR ".join(f'"{t}"' for t in terms)


class SqliteDatabase(Database):
    """A SQLite file; safe to share between threads (one connection behind a lock)."""

    dialect = "sqlite"
    setting = "SUPPORTBOT_DATA_DIR"

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = Path(path)
        self.name = str(self.path)
        self._lock = threading.RLock()
        self._depth = 0  # transaction nesting; only touched while holding the lock
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we issue BEGIN ourselves, so transactions are explicit.
        self._raw = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=10)
        self._raw.row_factory = _dict_row
        self._conn = Connection(self._raw, str)
        try:
            self._use_wal()
            # WAL with NORMAL stays consistent after a crash and skips an fsync per commit.
            self._raw.execute("PRAGMA synchronous=NORMAL")
            self._raw.execute("PRAGMA foreign_keys=ON")
        except BaseException:
            self._raw.close()
            raise

    def _use_wal(self, wait_s: float = 10.0) -> None:
        """Switch the file to WAL (it stays so); processes opening a new file at once may find it locked.

        The switch needs the file to itself, and SQLite may answer "locked" at once rather than wait for
        the busy timeout; so it is retried here, and skipped when another process already made the switch."""
        deadline = time.monotonic() + wait_s
        while True:
            try:
                if self._raw.execute("PRAGMA journal_mode").fetchone()["journal_mode"] != "wal":
                    self._raw.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """Hold the lock for BEGIN IMMEDIATE … COMMIT; roll back on error. Nested calls join the outer one."""
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield self._conn
                finally:
                    self._depth -= 1
                return
            self._raw.execute("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield self._conn
            except BaseException:
                self._raw.execute("ROLLBACK")
                raise
            else:
                self._raw.execute("COMMIT")
            finally:
                self._depth = 0

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Run one parameterised statement under the lock; return its rows as dicts."""
        with self._lock:
            return self._conn.execute(sql, params).rows

    def close(self) -> None:
        """Close the connection (idempotent)."""
        with self._lock:
            self._raw.close()

    # --- dialect hooks ---------------------------------------------------------------------------

    def lock(self, conn: Connection, name: str) -> None:
        """Nothing to do: BEGIN IMMEDIATE already holds the whole file's write lock."""

    def columns(self, conn: Connection, table: str) -> set[str]:
        """The columns of ``table`` (PRAGMA table_info; the name is ours, never a visitor's)."""
        return {row["name"] for row in conn.execute(f"PRAGMA table_info({table})").rows}

    def kb_schema(self) -> tuple[str, ...]:
        """An FTS5 table over title, category and body (porter stemming, diacritics folded)."""
        return _KB_SCHEMA

    def index_kb(self, conn: Connection) -> None:
        """Copy the articles into the FTS5 table."""
        conn.execute("INSERT INTO kb_fts (id, title, category, body) SELECT id, title, category, body FROM kb_articles")

    def search_kb(self, terms: Sequence[str], limit: int) -> list[dict[str, Any]]:
        """bm25 with per-column weights (title 4, category 2, body 1); score is -bm25, higher is better."""
        match = fts_query(terms)
        if not match:
            return []
        rows = self.execute(
            "SELECT id, title, category, snippet(kb_fts, 3, '**', '**', '…', 24) AS snippet, "
            "bm25(kb_fts, 0.0, 4.0, 2.0, 1.0) AS rank FROM kb_fts WHERE kb_fts MATCH ? "
            "ORDER BY rank LIMIT ?",
            (match, limit),
        )
        for row in rows:
            row["score"] = round(-row.pop("rank"), 3)  # bm25 is lower-is-better; flip it
        return rows

    def upgrade_v1(
        self,
        conn: Connection,
        legacy: str,
        create_sandboxes: Callable[[Connection], None],
        restore_orders: Callable[[Connection, list[str]], None],
    ) -> bool:
        """Keep version 1's shared refunds and escalations in the ``legacy`` sandbox, and put the orders they
        refunded back as the demo files seed them; False when this is not a version-1 database."""
        cols = self.columns(conn, "refunds")
        if not cols or "sandbox" in cols:
            return False
        conn.execute("ALTER TABLE refunds RENAME TO refunds_v1")
        conn.execute("ALTER TABLE escalations RENAME TO escalations_v1")
        create_sandboxes(conn)
        now = time.time()
        conn.execute("INSERT INTO sandboxes (id, created_at, touched_at) VALUES (?, ?, ?)", (legacy, now, now))
        conn.execute(
            "INSERT INTO refunds (sandbox, refund_id, order_id, reason, outcome, amount, currency, explanation, "
            "created_at) SELECT ?, id, order_id, reason, outcome, amount, currency, explanation, created_at "
            "FROM refunds_v1",
            (legacy,),
        )
        conn.execute(
            "INSERT INTO escalations (sandbox, ticket_id, seq, reason, priority, summary, conversation_id, status, "
            "created_at) SELECT ?, ticket_id, rowid, reason, priority, summary, conversation_id, status, created_at "
            "FROM escalations_v1",
            (legacy,),
        )
        refunded = [
            r["order_id"]
            for r in conn.execute("SELECT DISTINCT order_id FROM refunds_v1 WHERE outcome = 'approved'").rows
        ]
        conn.executemany(
            "INSERT INTO order_changes (sandbox, order_id, status, refunded_on) "
            "SELECT ?, id, status, refunded_on FROM orders WHERE id = ?",
            [(legacy, oid) for oid in refunded],
        )
        restore_orders(conn, refunded)
        conn.execute("DROP TABLE refunds_v1")
        conn.execute("DROP TABLE escalations_v1")
        return True
