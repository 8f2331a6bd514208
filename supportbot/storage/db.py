"""The storage interface: one small database API over SQLite (embedded) or PostgreSQL (shared).

Everything in ``storage`` talks to a :class:`Database`: ``transaction()`` yields a
:class:`Connection` whose ``execute`` returns a :class:`Result` of dict rows; ``execute`` and
``executemany`` on the database itself run one statement (inside the calling thread's open
transaction, if any). SQL is written once, with ``?`` placeholders, in the subset both
dialects share (``INSERT ... ON CONFLICT``, ``CASE``, no row ids, no ``COLLATE NOCASE``). The
few differences are hooks here: ``lock`` (serialise writers across processes), ``columns``,
the knowledge base's full-text index (FTS5 or ``tsvector``), and the version-1 upgrade that
only SQLite ever needs. The backends are ``storage.sqlite`` and ``storage.postgres``; the
latter (and psycopg) is imported only when a ``postgresql://`` URL is configured.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit, urlunsplit

URL_VARIABLE = "SUPPORTBOT_DATABASE_URL"
SQLITE_NAME = "supportbot.sqlite3"


class Result:
    """What one statement returned: its rows (as dicts) and how many rows it changed."""

    __slots__ = ("rows", "rowcount")

    def __init__(self, rows: list[dict[str, Any]], rowcount: int) -> None:
        self.rows = rows
        self.rowcount = rowcount

    def fetchone(self) -> dict[str, Any] | None:
        """The first row, or None."""
        return self.rows[0] if self.rows else None

    def fetchall(self) -> list[dict[str, Any]]:
        """Every row."""
        return self.rows

    def scalar(self) -> Any:
        """The first column of the first row (None when there is no row)."""
        return next(iter(self.rows[0].values())) if self.rows else None


class Connection:
    """One open connection inside a transaction; ``?`` placeholders are rewritten for the driver."""

    def __init__(self, raw: Any, rewrite: Callable[[str], str]) -> None:
        self.raw = raw
        self._rewrite = rewrite

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Result:
        """Run one parameterised statement."""
        cur = self.raw.execute(self._rewrite(sql), tuple(params))
        rows = cur.fetchall() if cur.description else []
        return Result(rows, cur.rowcount)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """Run one statement once per parameter row."""
        cur = self.raw.cursor()
        try:
            cur.executemany(self._rewrite(sql), [tuple(r) for r in rows])
        finally:
            cur.close()


class Database(ABC):
    """A SQLite file or a PostgreSQL database, behind the few operations storage needs."""

    dialect: ClassVar[str]
    setting: ClassVar[str]  # the variable that chooses this database, for messages
    name: str  # what messages show: the file, or the URL without its password

    def __init__(self) -> None:
        self.schema_version: int | None = None  # set once the schema is checked (storage.migrations)

    @abstractmethod
    def transaction(self) -> AbstractContextManager[Connection]:
        """A write transaction (committed on exit, rolled back on error); nested calls join the outer one."""

    @abstractmethod
    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Run one statement (in this thread's open transaction, if any); return its rows as dicts."""

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """Run one statement per parameter row, in one transaction."""
        with self.transaction() as conn:
            conn.executemany(sql, rows)

    @abstractmethod
    def close(self) -> None:
        """Release the connection(s) (idempotent)."""

    # --- dialect hooks ---------------------------------------------------------------------------

    @abstractmethod
    def lock(self, conn: Connection, name: str) -> None:
        """Serialise, across processes, the transactions that take ``name``, until this one ends."""

    @abstractmethod
    def columns(self, conn: Connection, table: str) -> set[str]:
        """The column names of ``table`` (empty when it does not exist)."""

    @abstractmethod
    def kb_schema(self) -> tuple[str, ...]:
        """Statements that create the knowledge base's full-text index (``kb_fts``)."""

    @abstractmethod
    def index_kb(self, conn: Connection) -> None:
        """Fill ``kb_fts`` from ``kb_articles``."""

    @abstractmethod
    def search_kb(self, terms: Sequence[str], limit: int) -> list[dict[str, Any]]:
        """Articles matching any of ``terms`` (plain words), best first: id, title, category, snippet, score."""

    def upgrade_v1(
        self,
        conn: Connection,
        legacy: str,
        create_sandboxes: Callable[[Connection], None],
        restore_orders: Callable[[Connection, list[str]], None],
    ) -> bool:
        """Move a version-1 database's shared refunds and escalations into the ``legacy`` sandbox; False when
        there is none (version 1 only ever ran on SQLite, so only that backend has anything to do)."""
        return False

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- choosing a backend ------------------------------------------------------------------------------


def redact_url(url: str) -> str:
    """``url`` with its password (in the address or as a ``password=`` parameter) replaced by ``***``."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if parts.password is not None:
            netloc = f"{parts.username or ''}:***@{netloc.rsplit('@', 1)[1]}"
        query = re.sub(r"(?i)(^|&)(password=)[^&]*", r"\1\2***", parts.query)
        return urlunsplit(parts._replace(netloc=netloc, query=query))
    except ValueError:  # an unparseable URL is shown as nothing rather than risk its secret
        return "<unreadable URL>"


def open_database(url: str | None, data_dir: Path) -> Database:
    """PostgreSQL at ``url`` when given, else the SQLite file in ``data_dir``."""
    if url:
        from supportbot.storage.postgres import PostgresDatabase

        return PostgresDatabase(url)
    from supportbot.storage.sqlite import SqliteDatabase

    data_dir.mkdir(parents=True, exist_ok=True)
    return SqliteDatabase(data_dir / SQLITE_NAME)


def sqlite_at(path: Path | str) -> Database:
    """The SQLite database in the file ``path`` (created when missing)."""
    from supportbot.storage.sqlite import SqliteDatabase

    return SqliteDatabase(Path(path))
