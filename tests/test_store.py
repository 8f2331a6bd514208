"""The store, on both backends: seeding, lookups, knowledge-base search, refunds, escalations, safety."""

from __future__ import annotations

import json
import re
import shutil
import threading
from datetime import date, timedelta
from pathlib import Path

import pytest

from supportbot.errors import CatalogError
from supportbot.storage.sqlite import fts_query
from supportbot.storage.store import DEFAULT_ASSETS, KB_CATEGORIES, ORDER_STATUSES, Store, query_terms


def copy_assets(tmp_path: Path) -> Path:
    """A private, editable copy of the demo assets; returns the assets dir."""
    target = tmp_path / "assets"
    shutil.copytree(DEFAULT_ASSETS / "demo", target / "demo")
    return target


def edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(json.dumps(data), encoding="utf-8")


# --- seeding ------------------------------------------------------------------------------


def test_seed_counts_cover_the_demo(store: Store) -> None:
    assert store.execute("SELECT COUNT(*) AS n FROM customers")[0]["n"] >= 20
    assert store.execute("SELECT COUNT(*) AS n FROM orders")[0]["n"] == 50
    statuses = {r["status"] for r in store.execute("SELECT DISTINCT status FROM orders")}
    assert statuses == set(ORDER_STATUSES)
    articles = store.execute("SELECT category FROM kb_articles")
    assert len(articles) >= 15
    assert {a["category"] for a in articles} == set(KB_CATEGORIES)
    languages = {r["language"] for r in store.execute("SELECT language FROM customers")}
    assert {"en", "es", "de", "fr"} <= languages


def test_article_order_is_late_relative_to_the_pinned_day(store: Store, today: date) -> None:
    order = store.get_order("48291")
    assert order is not None
    assert order["status"] == "delayed"
    assert order["eta"] == (today - timedelta(days=1)).isoformat()  # "supposed to arrive yesterday"
    assert order["ordered_on"] == (today - timedelta(days=6)).isoformat()
    assert order["delivered_on"] is None
    assert order["carrier"] and order["tracking_number"]
    assert round(sum(i["qty"] * i["unit_price"] for i in order["items"]), 2) == order["total"]


def test_shipped_orders_have_tracking_and_eta(store: Store) -> None:
    shipped = store.execute("SELECT * FROM orders WHERE status = 'shipped'")
    assert shipped
    assert all(o["carrier"] and o["tracking_number"] and o["eta"] for o in shipped)


@pytest.mark.parametrize("raw", ["48291", "#48291", " 48291 ", " #48291", "order #48291", "Order 48291"])
def test_order_id_normalisation(store: Store, raw: str) -> None:
    order = store.get_order(raw)
    assert order is not None and order["id"] == "48291"


def test_unknown_order_is_none(store: Store) -> None:
    assert store.get_order("99999") is None
    assert store.get_order("") is None


def test_get_customer_by_email_case_insensitive_and_by_id(store: Store) -> None:
    by_email = store.get_customer(email="  MAYA.Thompson@Example.COM ")
    assert by_email is not None and by_email["id"] == "C1001"
    assert store.get_customer(customer_id="c1001") == by_email
    assert store.get_customer(email="maya.thompson@example.com", customer_id="C1002") is None
    assert store.get_customer(email="nobody@example.com") is None
    with pytest.raises(ValueError):
        store.get_customer()


def test_orders_for_customer_newest_first(store: Store) -> None:
    orders = store.orders_for_customer("C1001", limit=5)
    assert [o["id"] for o in orders][0] == "48291"
    dates = [o["ordered_on"] for o in orders]
    assert dates == sorted(dates, reverse=True)
    assert len(store.orders_for_customer("C1001", limit=1)) == 1
    assert store.orders_for_customer("C9999") == []


# --- knowledge base --------------------------------------------------------------------------


def test_refund_question_ranks_a_refund_article_first(store: Store) -> None:
    results = store.search_kb("how do I get my money back refund", top_k=3)
    assert len(results) == 3
    assert results[0]["category"] == "refunds"
    assert set(results[0]) == {"id", "title", "category", "snippet", "score"}
    assert "**" in results[0]["snippet"]  # matched terms are highlighted
    scores = [r["score"] for r in results]
    assert scores == sorted(scores, reverse=True)


def test_search_respects_top_k_and_finds_other_topics(store: Store) -> None:
    assert len(store.search_kb("order", top_k=1)) == 1
    assert store.search_kb("earbuds will not pair bluetooth")[0]["category"] == "troubleshooting"
    assert store.search_kb("delete my personal data")[0]["category"] == "privacy"


@pytest.mark.parametrize(
    "query",
    ["???", '"', '""', "#", '"unbalanced', "(", "*", "NEAR(", "AND OR NOT", "-", "'; DROP TABLE kb_fts; --", ""],
)
def test_punctuation_and_operator_queries_do_not_raise(store: Store, query: str) -> None:
    results = store.search_kb(query)
    assert isinstance(results, list)
    assert store.execute("SELECT COUNT(*) AS n FROM kb_fts")[0]["n"] >= 15


def test_query_terms_drop_stopwords_and_fts_query_quotes_them() -> None:
    assert query_terms("Where is my order #48291?") == ["order", "48291"]
    assert fts_query(query_terms('say "hi" (now)')) == '"say" OR "hi" OR "now"'
    assert query_terms("?!#") == [] and fts_query([]) == ""
    assert query_terms("how do I") == ["how", "do", "i"]  # only stopwords: keep them rather than nothing


# --- safety ------------------------------------------------------------------------------------


def test_sql_is_parameterised(store: Store) -> None:
    evil = "'; DROP TABLE orders; --"
    assert store.get_order(evil) is None
    assert store.get_customer(email=evil) is None
    assert store.get_customer(customer_id=evil) is None
    assert store.orders_for_customer(evil) == []
    assert store.execute("SELECT COUNT(*) AS n FROM orders")[0]["n"] == 50


def test_sqlite_runs_in_wal_mode(tmp_path: Path) -> None:
    with Store(tmp_path / "db.sqlite") as sqlite_store:
        assert sqlite_store.execute("PRAGMA journal_mode")[0]["journal_mode"] == "wal"


# --- bad demo data names the entry ----------------------------------------------------------------


def _set_order_field(field: str, value: object):
    def change(orders: list[dict]) -> None:
        next(o for o in orders if o["id"] == "48291")[field] = value

    return change


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("eta_days", "soon", "eta_days"),
        ("status", "lost", "status"),
        ("total", 1.0, "does not match the items"),
        ("customer_id", "C9999", "unknown customer C9999"),
        ("shipped_days_ago", 30, "before the order date"),
        ("surprise", 1, "surprise"),
    ],
)
def test_bad_order_names_the_entry(tmp_path: Path, field: str, value: object, message: str) -> None:
    assets = copy_assets(tmp_path)
    orders_path = assets / "demo" / "orders.json"
    index = next(i for i, o in enumerate(json.loads(orders_path.read_text())) if o["id"] == "48291")
    edit_json(orders_path, _set_order_field(field, value))
    with pytest.raises(CatalogError) as info:
        Store(tmp_path / "db.sqlite", assets_dir=assets)
    assert info.value.entry == f"orders.json[{index}] (order 48291)"
    assert message in str(info.value)


def test_bad_customer_policy_kb_and_json_name_the_file(tmp_path: Path) -> None:
    assets = copy_assets(tmp_path)
    demo = assets / "demo"
    edit_json(demo / "customers.json", lambda cs: cs[2].update(email="not-an-email"))
    with pytest.raises(CatalogError, match=r"customers\.json\[2\] \(customer C1003\): email"):
        Store(tmp_path / "a.db", assets_dir=assets)

    assets = copy_assets(tmp_path / "p")
    edit_json(assets / "demo" / "policy.json", lambda p: p.update(refund_window_days=-1))
    with pytest.raises(CatalogError, match=r"policy\.json: refund_window_days"):
        Store(tmp_path / "b.db", assets_dir=assets)

    assets = copy_assets(tmp_path / "k")
    article = sorted((assets / "demo" / "kb").glob("*.md"))[0]
    article.write_text("no header here\n", encoding="utf-8")
    with pytest.raises(CatalogError) as info:
        Store(tmp_path / "c.db", assets_dir=assets)
    assert info.value.entry == f"kb/{article.name}"

    assets = copy_assets(tmp_path / "j")
    (assets / "demo" / "orders.json").write_text("[{,]", encoding="utf-8")
    with pytest.raises(CatalogError, match=r"orders\.json: not valid JSON \(line 1"):
        Store(tmp_path / "d.db", assets_dir=assets)


def test_failed_seed_leaves_nothing_behind(backend, tmp_path: Path) -> None:
    assets = copy_assets(tmp_path)
    good = (assets / "demo" / "orders.json").read_text()
    edit_json(assets / "demo" / "orders.json", _set_order_field("eta_days", "soon"))
    with pytest.raises(CatalogError):
        Store(backend.database(tmp_path), assets_dir=assets)
    (assets / "demo" / "orders.json").write_text(good)
    s = Store(backend.database(tmp_path), assets_dir=assets)
    assert s.execute("SELECT COUNT(*) AS n FROM customers")[0]["n"] >= 20
    assert s.execute("SELECT COUNT(*) AS n FROM orders")[0]["n"] == 50


# --- lifecycle -------------------------------------------------------------------------------------


def test_reopening_does_not_reseed(backend, tmp_path: Path, today: date) -> None:
    first_db = backend.database(tmp_path)
    first = Store(first_db, today=today)
    first.sandbox("s").create_escalation("reason", "normal", "summary", None)
    eta = first.get_order("48291")["eta"]
    first_db.close()
    second = Store(backend.database(tmp_path), today=today + timedelta(days=3))
    assert second.execute("SELECT COUNT(*) AS n FROM orders")[0]["n"] == 50
    assert (
        second.execute("SELECT COUNT(*) AS n FROM kb_fts")[0]["n"]
        == second.execute("SELECT COUNT(*) AS n FROM kb_articles")[0]["n"]
    )
    assert second.get_order("48291")["eta"] == eta  # dates stay those of the seeding day
    assert len(second.sandbox("s").list_escalations()) == 1


def test_refund_records_and_marks_order(store: Store, today: date) -> None:
    sandbox = store.sandbox("s")  # refunds are written to a conversation's sandbox, never to the seed
    denied = sandbox.record_refund("#48250", reason="changed my mind", outcome="denied", amount=0.0, explanation="late")
    assert denied["outcome"] == "denied" and sandbox.get_order("48250")["status"] == "delivered"
    approved = sandbox.record_refund("48256", reason="broken", outcome="approved", amount=12.5, explanation="ok")
    assert approved["order_id"] == "48256" and approved["currency"] == "USD"
    order = sandbox.get_order("48256")
    assert order["status"] == "refunded" and order["refunded_on"] == today.isoformat()
    recorded = store.execute(
        "SELECT order_id, outcome, amount FROM refunds WHERE sandbox = ? ORDER BY refund_id", (sandbox.key,)
    )
    assert recorded == [
        {"order_id": "48250", "outcome": "denied", "amount": 0.0},
        {"order_id": "48256", "outcome": "approved", "amount": 12.5},
    ]
    with pytest.raises(ValueError):
        sandbox.record_refund("48256", reason="x", outcome="maybe", amount=0, explanation="")  # type: ignore[arg-type]


def test_escalations_queue(store: Store) -> None:
    sandbox = store.sandbox("s")
    first = sandbox.create_escalation("angry", "high", "summary one", "conv-1")
    second = sandbox.create_escalation("refund dispute", "normal", "summary two", None)
    assert re.fullmatch(r"ESC-[0-9A-F]{6}", first["ticket_id"])
    assert first["ticket_id"] != second["ticket_id"]
    assert (first["queue_position"], second["queue_position"]) == (1, 2)
    # A human closes the first ticket (outside this app: no code here closes tickets).
    store.execute("UPDATE escalations SET status = 'closed' WHERE ticket_id = ?", (first["ticket_id"],))
    third = sandbox.create_escalation("other", "low", "summary three", None)
    assert third["queue_position"] == 2  # only the still-open ticket is ahead
    listed = store.execute("SELECT * FROM escalations WHERE sandbox = ? ORDER BY seq", (sandbox.key,))
    assert [e["ticket_id"] for e in listed] == [first["ticket_id"], second["ticket_id"], third["ticket_id"]]
    assert listed[0]["conversation_id"] == "conv-1" and listed[0]["status"] == "closed"
    assert [(e["reason"], e["priority"], e["summary"]) for e in listed[1:]] == [
        ("refund dispute", "normal", "summary two"),
        ("other", "low", "summary three"),
    ]


def test_transaction_helper_for_other_modules(store: Store) -> None:
    with store.transaction() as conn:
        conn.execute("CREATE TABLE notes (id TEXT PRIMARY KEY, body TEXT)")
        conn.execute("INSERT INTO notes (id, body) VALUES (?, ?)", ("1", "kept"))
    with pytest.raises(RuntimeError), store.transaction() as conn:
        conn.execute("INSERT INTO notes (id, body) VALUES (?, ?)", ("2", "rolled back"))
        with store.transaction():  # nested: joins the outer transaction
            store.execute("INSERT INTO notes (id, body) VALUES (?, ?)", ("3", "also rolled back"))
        raise RuntimeError("boom")
    assert [r["body"] for r in store.execute("SELECT body FROM notes")] == ["kept"]
    # A percent sign and a question mark inside a literal are text, not placeholders, on either backend.
    store.execute("INSERT INTO notes (id, body) VALUES ('4', '100% sure?')")
    assert store.execute("SELECT body FROM notes WHERE id = ? AND body LIKE '%?'", ("4",)) == [{"body": "100% sure?"}]


def test_concurrent_use_from_threads(store: Store) -> None:
    errors: list[BaseException] = []
    tickets: list[dict] = []
    barrier = threading.Barrier(8)

    def worker(n: int) -> None:
        try:
            barrier.wait()
            for i in range(25):
                assert store.get_order("#48291")["id"] == "48291"
                assert store.search_kb("refund money back")
                assert store.get_customer(customer_id="C1001") is not None
                if i % 5 == 0:
                    tickets.append(store.sandbox("shared").create_escalation(f"t{n}-{i}", "normal", "s", None))
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(tickets) == 40
    assert sorted(t["queue_position"] for t in tickets) == list(range(1, 41))
    assert len({t["ticket_id"] for t in tickets}) == 40
