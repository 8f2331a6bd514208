"""The storage interface: choosing a backend, its URL kept secret, the lazy driver, and several processes on
one database at once (start-up, seeding, the salt, counters), on both backends."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from supportbot.config import Settings
from supportbot.errors import ConfigError
from supportbot.storage.db import redact_url
from supportbot.storage.postgres import format_placeholders

ROOT = Path(__file__).resolve().parents[1]


# --- the setting -----------------------------------------------------------------------------------------


def test_the_database_url_is_a_secret_setting() -> None:
    url = "postgresql://bot:s3cret-pw@db.internal:5432/supportbot"
    settings = Settings.load(environ={"SUPPORTBOT_DATABASE_URL": url}, dotenv_path=None)
    settings.check()
    assert settings.database_url is not None and settings.database_url.get_secret_value() == url
    assert "s3cret-pw" not in repr(settings) and "s3cret-pw" not in str(settings.model_dump())
    assert Settings.load(environ={}, dotenv_path=None).database_url is None  # unset: SQLite in the data dir


@pytest.mark.parametrize("url", ["sqlite:///tmp/x.db", "mysql://bot:s3cret-pw@h/db", "s3cret-pw", "postgresql:/h"])
def test_a_database_url_that_is_not_postgresql_is_refused_without_echoing_it(url: str) -> None:
    settings = Settings.load(environ={"SUPPORTBOT_DATABASE_URL": url}, dotenv_path=None)
    with pytest.raises(ConfigError) as info:
        settings.check()
    assert info.value.variable == "SUPPORTBOT_DATABASE_URL" and "postgresql://" in str(info.value)
    assert "s3cret-pw" not in str(info.value)


def test_redacting_a_url_hides_its_password_wherever_it_is() -> None:
    assert redact_url("postgresql://bot:pw@h:5432/db") == "postgresql://bot:***@h:5432/db"
    assert redact_url("postgresql://bot:p%40ss@h/db?sslmode=require") == "postgresql://bot:***@h/db?sslmode=require"
    assert redact_url("postgresql://h/db?user=bot&password=pw") == "postgresql://h/db?user=bot&password=***"
    assert redact_url("postgresql://bot@h/db") == "postgresql://bot@h/db"  # nothing to hide


def test_placeholders_are_rewritten_outside_quotes_only() -> None:
    sql = "SELECT '?', x FROM t WHERE a = ? AND b LIKE '%?' AND c = 'it''s ?'"
    assert format_placeholders(sql) == "SELECT '?', x FROM t WHERE a = %s AND b LIKE '%%?' AND c = 'it''s ?'"


# Words of one dialect: each may appear in SQL (a string that is not a docstring) only in its backend's module.
SQLITE_ONLY = (
    "PRAGMA",
    "COLLATE NOCASE",
    "rowid",
    "fts5",
    "MATCH",
    "bm25(",
    "AUTOINCREMENT",
    "BEGIN IMMEDIATE",
    "INSERT OR",
)
POSTGRES_ONLY = ("%s", "FOR UPDATE", "tsvector", "tsquery", "pg_", "RETURNING", "::", "ILIKE")


def sql_strings(path: Path) -> list[str]:
    """Every string constant in a module but its docstrings: where its SQL is."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    ]


@pytest.mark.parametrize("module", ["store", "sandbox", "counters", "history", "migrations", "db"])
def test_sql_outside_the_backends_is_the_shared_subset(module: str) -> None:
    strings = sql_strings(ROOT / "supportbot" / "storage" / f"{module}.py")
    found = sorted({word for text in strings for word in (*SQLITE_ONLY, *POSTGRES_ONLY) if word in text})
    assert found == [], f"storage/{module}.py uses {found}: put it behind a hook of storage.db.Database"


def test_the_dialect_check_sees_each_backends_own_sql() -> None:
    assert {w for t in sql_strings(ROOT / "supportbot/storage/sqlite.py") for w in SQLITE_ONLY if w in t} >= {
        "PRAGMA",
        "fts5",
        "MATCH",
        "bm25(",
        "BEGIN IMMEDIATE",
        "rowid",
    }
    assert {w for t in sql_strings(ROOT / "supportbot/storage/postgres.py") for w in POSTGRES_ONLY if w in t} >= {
        "%s",
        "tsvector",
        "pg_",
    }


# --- the driver ----------------------------------------------------------------------------------------


def python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=ROOT, timeout=120, check=False
    )


def test_psycopg_is_loaded_only_when_postgresql_is_configured(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from supportbot.config import Settings\n"
        "from supportbot.services import Services\n"
        "s = Settings.load({'data_dir': sys.argv[1], 'engine': 'offline'}, environ={}, dotenv_path=None)\n"
        "Services.create(s).close()\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('psycopg', 'psycopg_pool')))\n"
    )
    out = python(code, str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
    assert (tmp_path / "supportbot.sqlite3").is_file()


def test_a_missing_driver_says_how_to_install_it() -> None:
    code = (
        "import sys\n"
        "sys.modules['psycopg'] = None  # as if not installed\n"
        "from supportbot.storage.db import open_database\n"
        "from pathlib import Path\n"
        "try:\n"
        "    open_database('postgresql://bot:s3cret-pw@127.0.0.1:1/db', Path('.'))\n"
        "except Exception as exc:\n"
        "    print(exc)\n"
    )
    out = python(code)
    assert 'SUPPORTBOT_DATABASE_URL: names PostgreSQL, whose driver is not installed: pip install -e ".[postgres]"' in (
        out.stdout
    ), out.stderr
    assert "s3cret-pw" not in out.stdout + out.stderr


@pytest.mark.postgres
def test_an_unreachable_server_is_named_without_its_password(pg_server) -> None:
    from supportbot.storage.postgres import PostgresDatabase

    with pytest.raises(ConfigError) as info:
        PostgresDatabase("postgresql://bot:s3cret-pw@127.0.0.1:1/supportbot")
    message = str(info.value)
    assert message.startswith("SUPPORTBOT_DATABASE_URL: cannot connect to postgresql://bot:***@127.0.0.1:1/supportbot")
    assert "s3cret-pw" not in message


# --- without PostgreSQL ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("required", "outcome"), [("", "1 skipped"), ("1", "1 error")])
def test_without_postgresql_its_tests_skip_unless_required(tmp_path: Path, required: str, outcome: str) -> None:
    (tmp_path / "test_needs_pg.py").write_text("def test_it(pg_server):\n    assert pg_server\n")
    (tmp_path / "conftest.py").write_text("from tests.conftest import pg_server  # noqa: F401\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SUPPORTBOT_PG_BIN": str(tmp_path / "no-such-dir")}
    env["SUPPORTBOT_REQUIRE_POSTGRES"] = required
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rsE", str(tmp_path / "test_needs_pg.py")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
        check=False,
    )
    assert outcome in out.stdout, out.stdout + out.stderr
    assert "PostgreSQL's binaries (initdb, pg_ctl) are not installed" in out.stdout
    if required:
        assert "SUPPORTBOT_REQUIRE_POSTGRES=1 but" in out.stdout


# --- several processes on one database -------------------------------------------------------------------

# Each child opens the database at the same moment (argv: url or '', data dir, start time, what to do).
CHILD = """
import json, sys, threading, time
from pathlib import Path
from supportbot.storage.counters import SpendCounters
from supportbot.storage.db import open_database
from supportbot.storage.store import Store

url, data_dir, start, task = sys.argv[1] or None, Path(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
time.sleep(max(0.0, start - time.time()))
db = open_database(url, data_dir)
counters = SpendCounters(Store(db))
granted = []
if task == "take":
    def work():
        for _ in range(10):
            granted.append(counters.take([("visitor:shared", 25), ("app", 1000)]) is None)
    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
print(json.dumps({"scope": counters.visitor_scope("ip:203.0.113.7"), "granted": granted.count(True)}))
db.close()
"""


def at_once(backend, location: Path, task: str, n: int) -> list[dict]:
    """Run ``n`` children that open ``location``'s database together; their JSON answers."""
    start = time.time() + 2.5  # after every child has imported what it needs (~0.7 s)
    args = [backend.url(location) or "", str(location), str(start), task]
    procs = [
        subprocess.Popen([sys.executable, "-c", CHILD, *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(n)
    ]
    answers = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()
        answers.append(json.loads(out.decode().strip().splitlines()[-1]))
    return answers


def test_processes_starting_at_once_create_and_seed_the_database_once(backend, tmp_path: Path) -> None:
    answers = at_once(backend, tmp_path, "open", 4)
    # One salt for all (stored in the database by whichever came first): they hash visitors alike.
    assert len({a["scope"] for a in answers}) == 1
    db = backend.database(tmp_path)
    assert db.execute("SELECT COUNT(*) AS n FROM orders")[0]["n"] == 50
    assert (
        db.execute("SELECT COUNT(*) AS n FROM kb_fts")[0]["n"]
        == db.execute("SELECT COUNT(*) AS n FROM kb_articles")[0]["n"]
    )
    assert [r["key"] for r in db.execute("SELECT key FROM meta ORDER BY key")] == [
        "schema_version",
        "seeded_on",
        "visitor_salt",
    ]


def test_counters_shared_by_processes_never_exceed_their_limit(backend, tmp_path: Path) -> None:
    answers = at_once(backend, tmp_path, "take", 3)  # 3 processes x 4 threads x 10 takes, 25 allowed
    assert sum(a["granted"] for a in answers) == 25
    db = backend.database(tmp_path)
    used = {r["scope"]: r["used"] for r in db.execute("SELECT scope, used FROM spend_counters")}
    assert used == {"visitor:shared": 25, "app": 25}  # the app's +1 was rolled back with each refusal


# --- a database the previous version left ----------------------------------------------------------------

# Version 2 as the code before the storage interface created it (SQLite only), with a little of everything.
V2 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE customers (id TEXT PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL UNIQUE COLLATE NOCASE,
    tier TEXT NOT NULL, language TEXT NOT NULL, created_on TEXT NOT NULL);
CREATE TABLE orders (id TEXT PRIMARY KEY, customer_id TEXT NOT NULL REFERENCES customers(id), status TEXT NOT NULL,
    status_detail TEXT, ordered_on TEXT NOT NULL, shipped_on TEXT, eta TEXT, delivered_on TEXT, cancelled_on TEXT,
    refunded_on TEXT, carrier TEXT, tracking_number TEXT, items TEXT NOT NULL, total REAL NOT NULL, currency TEXT NOT NULL);
CREATE TABLE kb_articles (id TEXT PRIMARY KEY, title TEXT NOT NULL, category TEXT NOT NULL, body TEXT NOT NULL);
CREATE VIRTUAL TABLE kb_fts USING fts5(id UNINDEXED, title, category, body, tokenize = 'porter unicode61 remove_diacritics 2');
CREATE TABLE sandboxes (id TEXT PRIMARY KEY, created_at REAL NOT NULL, touched_at REAL NOT NULL, forked_from TEXT);
CREATE TABLE order_changes (sandbox TEXT NOT NULL, order_id TEXT NOT NULL REFERENCES orders(id), status TEXT NOT NULL,
    refunded_on TEXT, PRIMARY KEY (sandbox, order_id));
CREATE TABLE refunds (sandbox TEXT NOT NULL, refund_id INTEGER NOT NULL, order_id TEXT NOT NULL REFERENCES orders(id),
    reason TEXT NOT NULL, outcome TEXT NOT NULL, amount REAL NOT NULL, currency TEXT NOT NULL, explanation TEXT NOT NULL,
    created_at TEXT NOT NULL, PRIMARY KEY (sandbox, refund_id));
CREATE TABLE escalations (sandbox TEXT NOT NULL, ticket_id TEXT NOT NULL, seq INTEGER NOT NULL, reason TEXT NOT NULL,
    priority TEXT NOT NULL, summary TEXT NOT NULL, conversation_id TEXT, status TEXT NOT NULL DEFAULT 'open',
    created_at TEXT NOT NULL, PRIMARY KEY (sandbox, ticket_id));
CREATE TABLE conversations (id TEXT PRIMARY KEY, created_at REAL NOT NULL, updated_at REAL NOT NULL,
    turns INTEGER NOT NULL, snapshot TEXT NOT NULL);
CREATE TABLE ticket_versions (conversation_id TEXT NOT NULL, version INTEGER NOT NULL, created_at REAL NOT NULL,
    ticket TEXT NOT NULL, PRIMARY KEY (conversation_id, version));
CREATE TABLE spend_counters (scope TEXT NOT NULL, day TEXT NOT NULL, used INTEGER NOT NULL, updated_at REAL NOT NULL,
    PRIMARY KEY (scope, day));
INSERT INTO meta VALUES ('schema_version', '2'), ('seeded_on', '2025-03-14'), ('visitor_salt', '00ff00ff');
INSERT INTO customers VALUES ('C1001', 'Maya Thompson', 'maya.thompson@example.com', 'plus', 'en', '2024-01-01');
INSERT INTO orders VALUES ('48258', 'C1001', 'delayed', NULL, '2025-03-01', NULL, NULL, NULL, NULL, NULL, NULL, NULL,
    '[]', 149.0, 'USD');
INSERT INTO kb_articles VALUES ('KB-005', 'How refunds work', 'refunds', 'Refunds go back to the original payment.');
INSERT INTO kb_fts VALUES ('KB-005', 'How refunds work', 'refunds', 'Refunds go back to the original payment.');
INSERT INTO sandboxes VALUES ('conv-old', 1.0, 1.0, NULL);
INSERT INTO order_changes VALUES ('conv-old', '48258', 'refunded', '2025-03-14');
INSERT INTO refunds VALUES ('conv-old', 1, '48258', 'lost', 'approved', 149.0, 'USD', 'ok', '2025-03-14T10:00:00+00:00');
INSERT INTO spend_counters VALUES ('app', '2999-01-01', 7, 1.0);
"""


def test_a_version_2_database_is_migrated_and_keeps_everything(tmp_path: Path) -> None:
    import hashlib
    import hmac
    import sqlite3

    from supportbot.services import Services
    from supportbot.session import Session
    from supportbot.storage.history import snapshot
    from supportbot.storage.migrations import SCHEMA_VERSION

    path = tmp_path / "supportbot.sqlite3"
    old = Session()
    with sqlite3.connect(path) as conn:
        conn.executescript(V2)
        conn.execute(
            "INSERT INTO conversations VALUES (?, 1.0, 1.0, 0, ?)", (old.conversation_id, json.dumps(snapshot(old)))
        )
    conn.close()
    services = Services.create(Settings.load({"data_dir": tmp_path, "engine": "offline"}, environ={}, dotenv_path=None))
    try:
        assert services.store.execute("SELECT value FROM meta WHERE key = 'schema_version'")[0]["value"] == str(
            SCHEMA_VERSION
        )
        assert services.history.load(old.conversation_id) is not None
        assert services.store.sandbox("conv-old").get_order("48258")["status"] == "refunded"
        assert services.store.get_customer(email="MAYA.Thompson@example.com")["id"] == "C1001"
        assert services.store.search_kb("refund money back")[0]["id"] == "KB-005"
        assert services.store.execute("SELECT COUNT(*) AS n FROM customers")[0]["n"] == 1  # not seeded again
        expected = hmac.new(bytes.fromhex("00ff00ff"), b"ip:1.2.3.4", hashlib.sha256).hexdigest()[:32]
        assert services.counters.visitor_scope("ip:1.2.3.4") == f"visitor:{expected}"  # the salt is kept
        assert services.store.execute("SELECT used FROM spend_counters WHERE scope = 'app'") == [{"used": 7}]
    finally:
        services.close()
