"""The PostgreSQL backend: one database shared by every replica of the app, through psycopg 3 and a pool.

Imported only when ``SUPPORTBOT_DATABASE_URL`` names PostgreSQL (``pip install -e ".[postgres]"``).
Connections come from a ``psycopg_pool`` pool in autocommit mode; ``transaction()`` holds one for
a ``BEGIN … COMMIT`` and lends it to nested calls and to ``execute`` made by the same thread, so a
read inside a transaction sees (and is serialised with) that transaction's writes. Isolation is
PostgreSQL's default, READ COMMITTED; writers that must not interleave say so explicitly: a
conditional ``UPDATE`` (spending counters), a row lock (a sandbox's row), or ``lock(name)``, a
transaction-scoped advisory lock (schema creation, seeding, ticket versions). The knowledge base
is a ``tsvector`` per article (title weight A, category B, body C) under a GIN index, matched with
``to_tsquery`` and marked with ``ts_headline``, and ranked by bm25 computed over those vectors
exactly as SQLite's FTS5 computes it (title 4 : category 2 : body 1), so both backends put the same
article first. ``ts_rank`` has no inverse document frequency: the best of 28 weightings and
normalisations still put another article first for 4 of 38 realistic questions.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from supportbot.config import redact
from supportbot.errors import ConfigError
from supportbot.storage.db import URL_VARIABLE, Connection, Database, redact_url

POOL_SIZE = 10  # per process: Gradio's worker threads wait here rather than open a connection each
POOL_WAIT_S = 30.0
CONNECT_TIMEOUT_S = 10
_TEXT_CONFIG = "english"
# Per article: title (A), category (B) and body (C), stemmed as English; and its length in words,
# counted as SQLite's unicode61 tokenizer counts them (stopwords included), for bm25's length norm.
_DOCUMENT = (
    f"setweight(to_tsvector('{_TEXT_CONFIG}', title), 'A') || "
    f"setweight(to_tsvector('{_TEXT_CONFIG}', category), 'B') || "
    f"setweight(to_tsvector('{_TEXT_CONFIG}', body), 'C')"
)
_LENGTH = "(SELECT count(*) FROM regexp_matches(title || ' ' || category || ' ' || body, '[[:alnum:]]+', 'g'))"
_KB_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS kb_fts (id TEXT PRIMARY KEY REFERENCES kb_articles(id), "
    "document tsvector NOT NULL, length INTEGER NOT NULL)",
    "CREATE INDEX IF NOT EXISTS kb_fts_document ON kb_fts USING GIN (document)",
)
# bm25 as SQLite's FTS5 computes it (fts5_aux.c), so both backends rank alike: per query term, the
# frequency weighted by column (title 4, category 2, body 1), idf = ln((N - n + 0.5) / (n + 0.5))
# floored at 1e-6, k1 = 1.2, b = 0.75, the row's length against the average (tests/test_kb_parity.py).
_BM25 = f"""
WITH terms AS (
    SELECT w.n AS term, t.lexeme FROM unnest(CAST(? AS text[])) WITH ORDINALITY AS w(word, n),
    unnest(to_tsvector('{_TEXT_CONFIG}', w.word)) AS t
), corpus AS (
    SELECT count(*) AS rows, avg(length) AS avgdl FROM kb_fts
), hits AS (
    SELECT f.id, terms.term, f.length,
        (SELECT sum(CASE x WHEN 'A' THEN 4 WHEN 'B' THEN 2 ELSE 1 END) FROM unnest(d.weights) AS x) AS freq
    FROM kb_fts f CROSS JOIN LATERAL unnest(f.document) AS d JOIN terms ON terms.lexeme = d.lexeme
    WHERE f.document @@ to_tsquery('{_TEXT_CONFIG}', ?)
), idf AS (
    SELECT term, greatest(ln((c.rows - count(DISTINCT h.id) + 0.5) / (count(DISTINCT h.id) + 0.5)), 1e-6) AS idf
    FROM hits h CROSS JOIN corpus c GROUP BY term, c.rows
), scores AS (
    SELECT h.id, sum(i.idf * h.freq * 2.2 / (h.freq + 1.2 * (0.25 + 0.75 * h.length / c.avgdl))) AS score
    FROM hits h JOIN idf i USING (term) CROSS JOIN corpus c GROUP BY h.id
)
SELECT a.id, a.title, a.category, s.score,
    ts_headline('{_TEXT_CONFIG}', a.body, to_tsquery('{_TEXT_CONFIG}', ?), '{{headline}}') AS snippet
FROM scores s JOIN kb_articles a ON a.id = s.id ORDER BY s.score DESC, a.id LIMIT ?
"""
_HEADLINE = "StartSel=**, StopSel=**, MaxWords=24, MinWords=12, ShortWord=2, MaxFragments=1, FragmentDelimiter=…"
_SEARCH = _BM25.replace("{headline}", _HEADLINE)


# A quoted literal or identifier, or one character that needs rewriting.
_SQL_PARTS = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|[?%]")


def format_placeholders(sql: str) -> str:
    """``?`` -> ``%s`` outside quotes and ``%`` -> ``%%`` everywhere: the same SQL for a ``format``-style driver."""

    def swap(match: re.Match[str]) -> str:
        part = match.group(0)
        return "%s" if part == "?" else part.replace("%", "%%")

    return _SQL_PARTS.sub(swap, sql)


def tsquery(terms: Sequence[str]) -> str:
    """A ``to_tsquery`` text matching any of ``terms`` ('' if none): each quoted, so it is a literal term."""
    # Terms are \\w+ tokens (see store.query_terms): they hold no quote or backslash to escape.
    return " | ".join(f"'{t}'" for t in terms)


def lock_key(name: str) -> int:
    """A stable 64-bit advisory-lock key for ``name`` (the same in every process, unlike ``hash``)."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True)


class PostgresDatabase(Database):
    """A PostgreSQL database through a connection pool; safe to share between threads and processes."""

    dialect = "postgresql"
    setting = URL_VARIABLE

    def __init__(self, url: str, *, pool_size: int = POOL_SIZE) -> None:
        super().__init__()
        self.name = redact_url(url)
        try:
            import psycopg
            from psycopg.rows import dict_row
            from psycopg_pool import ConnectionPool
        except ImportError:
            raise ConfigError(
                URL_VARIABLE, 'names PostgreSQL, whose driver is not installed: pip install -e ".[postgres]"'
            ) from None
        try:
            password = psycopg.conninfo.conninfo_to_dict(url).get("password")
        except psycopg.Error:
            password = None  # the connect below says what is wrong with the URL
        # Connect once now: a wrong URL stops start-up with the server's reason, not later in a pool thread.
        try:
            psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT_S).close()
        except psycopg.Error as exc:
            reason = redact(str(exc).strip(), str(password) if password else None)
            raise ConfigError(URL_VARIABLE, f"cannot connect to {self.name}: {reason}") from None
        self._pool = ConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            kwargs={"autocommit": True, "row_factory": dict_row},
            check=ConnectionPool.check_connection,  # a server restart must not hand out dead connections
            timeout=POOL_WAIT_S,
            name="supportbot",
            open=True,
        )
        self._local = threading.local()

    def _current(self) -> Connection | None:
        return getattr(self._local, "conn", None)

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """BEGIN … COMMIT on one pooled connection (rolled back on error); nested calls join the outer one."""
        current = self._current()
        if current is not None:
            yield current
            return
        with self._pool.connection() as raw, raw.transaction():
            conn = Connection(raw, format_placeholders)
            self._local.conn = conn
            try:
                yield conn
            finally:
                self._local.conn = None

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Run one statement: in this thread's transaction if one is open, else on its own (autocommit)."""
        current = self._current()
        if current is not None:
            return current.execute(sql, params).rows
        with self._pool.connection() as raw:
            return Connection(raw, format_placeholders).execute(sql, params).rows

    def close(self) -> None:
        """Close the pool and its connections (idempotent)."""
        self._pool.close()

    # --- dialect hooks ---------------------------------------------------------------------------

    def lock(self, conn: Connection, name: str) -> None:
        """A transaction-scoped advisory lock: released at COMMIT or ROLLBACK."""
        conn.execute("SELECT pg_advisory_xact_lock(?)", (lock_key(name),))

    def columns(self, conn: Connection, table: str) -> set[str]:
        """The columns of ``table`` in the current schema."""
        rows = conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() "
            "AND table_name = ?",
            (table,),
        ).rows
        return {row["column_name"] for row in rows}

    def kb_schema(self) -> tuple[str, ...]:
        """A weighted ``tsvector`` per article under a GIN index."""
        return _KB_SCHEMA

    def index_kb(self, conn: Connection) -> None:
        """Compute each article's document vector and length."""
        conn.execute(f"INSERT INTO kb_fts (id, document, length) SELECT id, {_DOCUMENT}, {_LENGTH} FROM kb_articles")

    def search_kb(self, terms: Sequence[str], limit: int) -> list[dict[str, Any]]:
        """bm25 over the weighted vectors (as FTS5 ranks); ``ts_headline`` marks the matches in the body."""
        query = tsquery(terms)
        if not query:
            return []
        rows = self.execute(_SEARCH, (list(terms), query, query, limit))
        for row in rows:
            row["score"] = round(float(row["score"]), 3)
        return rows
