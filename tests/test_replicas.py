"""Two replicas of the app (two ``python app.py`` processes) on one PostgreSQL database share
conversations, sandboxes and the daily limits: what one starts, the other continues."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from supportbot.storage.counters import APP_SCOPE, SpendCounters
from supportbot.storage.postgres import PostgresDatabase
from supportbot.storage.store import Store
from supportbot.ui.handlers import EXAMPLES
from tests.appprocess import AppProcess, start_all
from tests.visitor import Visitor

pytestmark = pytest.mark.postgres

ORDER = "Where is my order #48291?"  # two requests on the offline engine: a tool round, then the answer
REFUND = next(text for label, text, _ in EXAMPLES if "Refund" in label)
VISITOR_LIMIT = 6
APP_LIMIT = 40


@pytest.fixture(scope="module")
def replicas(pg_server, tmp_path_factory: pytest.TempPathFactory):
    """Two app processes on one fresh database, with both daily bounds set and one trusted proxy hop."""
    url = pg_server.create_database("replicas")
    env = {
        "SUPPORTBOT_DATABASE_URL": url,
        "SUPPORTBOT_VISITOR_REQUESTS_PER_DAY": str(VISITOR_LIMIT),
        "SUPPORTBOT_REQUESTS_PER_DAY": str(APP_LIMIT),
        "SUPPORTBOT_TRUSTED_PROXIES": "1",
        "SUPPORTBOT_MAX_RETRIES": "0",  # no retries: the bounds may not be overshot at all
    }
    root = tmp_path_factory.mktemp("replicas")
    apps = start_all([AppProcess(root / name, env) for name in ("a", "b")])
    database = PostgresDatabase(url)
    yield [app.url for app in apps], database
    database.close()
    for app in apps:
        app.stop()


def client(url: str, address: str) -> Client:
    return Client(url, verbose=False, ssl_verify=False, headers={"X-Forwarded-For": address})


def turn(c: Client, text: str) -> dict:
    c.predict({"text": text, "files": []}, api_name="/chat")
    return c.predict(api_name="/session")


def refunds(session: dict) -> list[dict]:
    return [c["result"] for c in session["tool_calls"] if c["name"] == "request_refund"]


def test_a_conversation_started_on_one_replica_continues_on_the_other(replicas) -> None:
    (a, b), _ = replicas
    first = turn(client(a, "203.0.113.1"), REFUND)
    assert refunds(first)[-1]["outcome"] == "approved"
    cid = first["conversation_id"]
    # The other replica opens it by /load and continues it, in a copy of its sandbox (the refund is there).
    there = client(b, "203.0.113.1")
    loaded = there.predict(cid, api_name="/load")
    assert loaded["messages"] == first["messages"]
    second = turn(there, REFUND)
    assert second["forked_from"] == cid and second["conversation_id"] != cid
    assert second["messages"][: len(first["messages"])] == first["messages"]
    assert "already refunded" in refunds(second)[-1]["explanation"]
    # ...and back on the first replica by its share link (?c=), both turns are there.
    page = Visitor(a)
    try:
        out = page.call("page_load", ["all", None, "pro", None], query=f"?c={second['conversation_id']}")
        assert out.ok and not out.warnings, (out.error, out.warnings)
        stored = page.call("session", [None]).data[0]
    finally:
        page.close()
    assert stored["messages"] == second["messages"] and stored["turns"] == 2
    # The original never changed: what the fork did stayed in the fork.
    assert client(a, "203.0.113.1").predict(cid, api_name="/load")["messages"] == first["messages"]


def test_an_unknown_conversation_is_expired_on_every_replica(replicas) -> None:
    (a, b), _ = replicas
    for url in (a, b):
        with pytest.raises(AppError, match="No conversation with that id is stored here"):
            client(url, "203.0.113.2").predict("c" * 32, api_name="/load")


def outcome(url: str, address: str, text: str = ORDER) -> tuple[str, dict | None]:
    """One visitor's turn on one replica: ("answered" | "limit" | "refused", session)."""
    c = client(url, address)
    try:
        session = turn(c, text)
    except AppError as exc:
        assert "daily request limit" in str(exc), exc  # refused before it started, and said why
        return "refused", None
    last = session["messages"][-1]
    return ("limit" if last.get("error_kind") == "limit" else "answered"), session


def test_the_daily_limits_hold_across_both_replicas_under_concurrent_turns(replicas) -> None:
    (a, b), database = replicas
    counters = SpendCounters(Store(database))  # the salt is in the database: the same hash as the replicas'
    # One visitor sends ten turns at once, five to each replica: twenty requests wanted, six allowed.
    with ThreadPoolExecutor(10) as pool:
        results = list(pool.map(lambda i: outcome((a, b)[i % 2], "198.51.100.7"), range(10)))
    visitor = counters.visitor_scope("ip:198.51.100.7")
    assert counters.used([visitor])[visitor] == VISITOR_LIMIT  # exactly: nothing lost, nothing overshot
    # A complete turn takes two requests; which turns got them depends on timing (maybe none complete).
    kinds = [kind for kind, _ in results]
    assert kinds.count("answered") <= VISITOR_LIMIT // 2 and kinds.count("limit") + kinds.count("refused") >= 7
    # Then twenty other visitors at once, alternating replicas, want more than the app has left.
    before = counters.used([APP_SCOPE])[APP_SCOPE]
    assert (APP_LIMIT - before) < 2 * 20
    with ThreadPoolExecutor(20) as pool:
        results += list(pool.map(lambda i: outcome((a, b)[i % 2], f"192.0.2.{i + 10}"), range(20)))
    assert counters.used([APP_SCOPE])[APP_SCOPE] == APP_LIMIT
    refused = [kind for kind, _ in results[10:] if kind != "answered"]
    assert refused, "the app-wide limit was never reached"
    # Every answered turn is stored, and either replica shows it.
    for i, (kind, session) in enumerate(results):
        if session is not None:
            loaded = client((b, a)[i % 2], "203.0.113.9").predict(session["conversation_id"], api_name="/load")
            assert loaded["messages"] == session["messages"], kind


def test_the_replicas_seeded_the_shop_once(replicas) -> None:
    _, database = replicas
    assert database.execute("SELECT COUNT(*) AS n FROM orders")[0]["n"] == 50
    assert database.execute("SELECT COUNT(*) AS n FROM meta WHERE key IN ('seeded_on', 'visitor_salt')")[0]["n"] == 2


def test_the_database_url_never_shows_its_password(tmp_path: Path) -> None:
    app = AppProcess(tmp_path, {"SUPPORTBOT_DATABASE_URL": "postgresql://bot:s3cret-pw@127.0.0.1:1/supportbot"})
    app.start()
    assert app.proc is not None and app.proc.wait(timeout=120) == 2
    said = app.tail()
    assert "supportbot cannot start: SUPPORTBOT_DATABASE_URL: cannot connect to" in said
    assert "postgresql://bot:***@127.0.0.1:1/supportbot" in said and "s3cret-pw" not in said
