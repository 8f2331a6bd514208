"""Per-conversation sandboxes of the demo shop: in the store, and through the launched app."""

from __future__ import annotations

import sqlite3
import threading
from datetime import date
from pathlib import Path

import pytest
from gradio_client import Client

from supportbot.errors import SupportbotError
from supportbot.storage.migrations import SCHEMA_VERSION
from supportbot.storage.sandbox import LEGACY
from supportbot.storage.store import Store
from supportbot.ui.handlers import EXAMPLES
from tests.conftest import launch_app

REFUND = next(text for label, text, _ in EXAMPLES if "Refund" in label)  # order #48258, never arrived
ESCALATE = next(text for label, text, _ in EXAMPLES if "Escalation" in label)


def seeded_rows(store: Store) -> list[dict]:
    return store.execute("SELECT * FROM orders ORDER BY id")


# --- the store -------------------------------------------------------------------------------------


def test_a_refund_in_one_sandbox_is_invisible_to_others_and_to_the_seed(store: Store) -> None:
    before = seeded_rows(store)
    a, b = store.sandbox("a"), store.sandbox("b")
    refund = a.record_refund("48258", reason="lost", outcome="approved", amount=10.0, explanation="ok")
    assert refund["refund_id"] == 1
    assert a.get_order("48258")["status"] == "refunded"
    assert a.get_order("48258")["refunded_on"] == store.today.isoformat()
    assert b.get_order("48258")["status"] == "delayed" and b.get_order("48258")["refunded_on"] is None
    assert store.get_order("48258")["status"] == "delayed"
    assert b.refunds_for_order("48258") == [] and len(a.refunds_for_order("48258")) == 1
    customer = store.get_order("48258")["customer_id"]
    by_status = {o["id"]: o["status"] for o in a.orders_for_customer(customer, limit=50)}
    assert by_status["48258"] == "refunded"
    assert {o["id"]: o["status"] for o in b.orders_for_customer(customer, limit=50)}["48258"] == "delayed"
    # b gets its own refund numbering, and the seeded rows never changed.
    assert b.record_refund("48258", reason="lost", outcome="approved", amount=10.0, explanation="ok")["refund_id"] == 1
    assert seeded_rows(store) == before


def test_escalation_queue_positions_count_within_a_sandbox(store: Store) -> None:
    a, b = store.sandbox("a"), store.sandbox("b")
    first = a.create_escalation("angry", "high", "s", "a")
    assert a.create_escalation("again", "normal", "s", "a")["queue_position"] == 2
    assert b.create_escalation("angry", "high", "s", "b")["queue_position"] == 1
    assert a.close_escalation(first["ticket_id"]) and not b.close_escalation(first["ticket_id"])
    assert a.create_escalation("third", "low", "s", "a")["queue_position"] == 2
    assert [e["reason"] for e in a.list_escalations()] == ["angry", "again", "third"]
    assert [e["reason"] for e in b.list_escalations("open")] == ["angry"]


def test_a_fork_starts_as_a_copy_and_never_reaches_its_original(store: Store) -> None:
    original = store.sandbox("orig")
    original.record_refund("48258", reason="lost", outcome="approved", amount=1.0, explanation="ok")
    ticket = original.create_escalation("angry", "high", "s", "orig")
    fork = store.sandbox("fork", fork_of="orig")
    assert fork.get_order("48258")["status"] == "refunded"
    assert [e["ticket_id"] for e in fork.list_escalations()] == [ticket["ticket_id"]]
    assert fork.record_refund("48256", reason="x", outcome="approved", amount=1.0, explanation="ok")["refund_id"] == 2
    assert fork.create_escalation("more", "normal", "s", "fork")["queue_position"] == 2
    assert original.get_order("48256")["status"] == "delivered"
    assert len(original.list_escalations()) == 1
    # Opening an existing sandbox again only touches it: its state is not re-copied or reset.
    again = store.sandbox("fork", fork_of="orig")
    assert len(again.list_escalations()) == 2


def test_sandbox_keys_are_checked(store: Store) -> None:
    for bad in ("", "   ", "x" * 101):
        with pytest.raises(ValueError, match="sandbox key"):
            store.sandbox(bad)


def test_concurrent_refunds_in_one_sandbox_approve_once(store: Store) -> None:
    import asyncio

    from supportbot.tools import REGISTRY, ToolContext

    outcomes: list[str] = []

    def worker() -> None:
        ctx = ToolContext(store.sandbox("same"), "same")
        result = asyncio.run(REGISTRY.run("c", "request_refund", '{"order_id": "48258", "reason": "lost"}', ctx))
        outcomes.append(result.result["outcome"])

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["approved"] + ["denied"] * 5


# --- migration from the shared shop (schema version 1) ---------------------------------------------

V1_TABLES = """
DROP TABLE refunds; DROP TABLE escalations; DROP TABLE order_changes; DROP TABLE sandboxes;
DELETE FROM meta WHERE key = 'schema_version';
CREATE TABLE refunds (
    id INTEGER PRIMARY KEY AUTOINCREMENT, order_id TEXT NOT NULL REFERENCES orders(id),
    reason TEXT NOT NULL, outcome TEXT NOT NULL CHECK (outcome IN ('approved', 'denied')),
    amount REAL NOT NULL, currency TEXT NOT NULL, explanation TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE escalations (
    ticket_id TEXT PRIMARY KEY, reason TEXT NOT NULL, priority TEXT NOT NULL, summary TEXT NOT NULL,
    conversation_id TEXT, status TEXT NOT NULL DEFAULT 'open', created_at TEXT NOT NULL);
INSERT INTO refunds (order_id, reason, outcome, amount, currency, explanation, created_at)
    VALUES ('48258', 'lost', 'approved', 149.0, 'USD', 'ok', '2025-03-14T10:00:00+00:00');
UPDATE orders SET status = 'refunded', refunded_on = '2025-03-14' WHERE id = '48258';
INSERT INTO escalations (ticket_id, reason, priority, summary, created_at)
    VALUES ('ESC-000001', 'angry', 'high', 's', '2025-03-14T10:00:00+00:00');
"""


def test_a_version_1_database_is_migrated_and_its_shared_refund_undone(tmp_path: Path, today: date) -> None:
    path = tmp_path / "old.sqlite3"
    with Store(path, today=today) as fresh:
        seeded = fresh.get_order("48258")
    conn = sqlite3.connect(path)
    conn.executescript(V1_TABLES)
    conn.close()
    with Store(path, today=today) as store:
        assert store.get_order("48258") == seeded  # the seeded row is as the demo files say again
        assert store.sandbox("new visitor").get_order("48258")["status"] == "delayed"
        legacy = store.sandbox(LEGACY)
        assert legacy.get_order("48258")["status"] == "refunded"
        assert [r["outcome"] for r in legacy.refunds_for_order("48258")] == ["approved"]
        assert [e["ticket_id"] for e in legacy.list_escalations()] == ["ESC-000001"]
        assert store.execute("SELECT value FROM meta WHERE key = 'schema_version'")[0]["value"] == str(SCHEMA_VERSION)
    with Store(path, today=today) as again:  # migrating twice changes nothing
        assert len(again.sandbox(LEGACY).refunds_for_order("48258")) == 1


def test_a_database_from_newer_code_is_refused_naming_it(backend, tmp_path: Path, today: date) -> None:
    Store(backend.database(tmp_path), today=today).db.execute(
        "UPDATE meta SET value = '99' WHERE key = 'schema_version'"
    )
    reopened = backend.database(tmp_path)
    with pytest.raises(SupportbotError, match="schema version 99, newer than this code knows") as info:
        Store(reopened, today=today)
    assert str(info.value).startswith(f"{reopened.name}: ")  # the file, or the URL without its password
    assert ("SUPPORTBOT_DATABASE_URL" if backend.name == "postgresql" else "SUPPORTBOT_DATA_DIR") in str(info.value)


# --- through the launched app ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory):
    demo, url = launch_app(tmp_path_factory.mktemp("sandbox-app"))
    yield url
    demo.close()


def new_client(url: str) -> Client:
    return Client(url, verbose=False, ssl_verify=False)


def turn(client: Client, text: str) -> dict:
    client.predict({"text": text, "files": []}, api_name="/chat")
    return client.predict(api_name="/session")


def calls(session: dict, name: str) -> list[dict]:
    return [c for c in session["tool_calls"] if c["name"] == name]


def test_the_refund_example_is_approved_for_every_visitor(url: str) -> None:
    first, second = new_client(url), new_client(url)
    a = turn(first, REFUND)
    b = turn(second, REFUND)
    for session in (a, b):
        [refund] = calls(session, "request_refund")
        assert refund["result"]["outcome"] == "approved" and "treated as lost" in refund["result"]["explanation"]
    # Within one conversation the refund happened: asking again is denied as already refunded.
    again = turn(first, REFUND)
    assert calls(again, "request_refund")[-1]["result"]["outcome"] == "denied"
    assert "already refunded" in calls(again, "request_refund")[-1]["result"]["explanation"]
    # New conversation: a fresh sandbox, approved again.
    first.predict(api_name="/new_conversation")
    fresh = turn(first, REFUND)
    assert calls(fresh, "request_refund")[-1]["result"]["outcome"] == "approved"


def test_an_escalation_in_one_conversation_does_not_move_anothers_queue(url: str) -> None:
    first, second = new_client(url), new_client(url)
    a1 = turn(first, ESCALATE)
    a2 = turn(first, ESCALATE)
    b = turn(second, ESCALATE)
    positions = [calls(s, "escalate_to_human")[-1]["result"]["queue_position"] for s in (a1, a2, b)]
    assert positions == [1, 2, 1]
    assert "position 1 in the queue" in b["messages"][-1]["content"]


def test_a_reloaded_conversation_continues_from_a_copy_of_its_sandbox(url: str) -> None:
    owner = new_client(url)
    original = turn(owner, REFUND)
    assert calls(original, "request_refund")[0]["result"]["outcome"] == "approved"
    visitor = new_client(url)
    visitor.predict(original["conversation_id"], api_name="/load")
    forked = turn(visitor, REFUND)
    assert forked["forked_from"] == original["conversation_id"]
    assert forked["conversation_id"] != original["conversation_id"]
    # The fork remembers the refund its original made...
    assert "already refunded" in calls(forked, "request_refund")[-1]["result"]["explanation"]
    # ...and what the fork does never reaches the original: its queue is still its own.
    turn(visitor, ESCALATE)
    owner_escalation = turn(owner, ESCALATE)
    assert calls(owner_escalation, "escalate_to_human")[-1]["result"]["queue_position"] == 1
