"""Conversation persistence, on both backends: round trips, image stripping, ticket versions, exports, retention,
crashes."""

from __future__ import annotations

import base64
import dataclasses
import io
import json

import pytest
from PIL import Image

from supportbot.errors import CatalogError, SupportbotError
from supportbot.session import Session
from supportbot.storage.history import FORMAT, History

DAY = 86_400.0


def stored_fields(session: Session) -> dict:
    """Every field a save keeps (not the runtime flags ``loaded`` and ``busy``)."""
    return {f.name: getattr(session, f.name) for f in dataclasses.fields(session) if f.compare}


def png_data_url(w: int = 40, h: int = 30) -> str:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), (200, 30, 30)).save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


class Clock:
    def __init__(self, t: float = 1_800_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def hist(backend, tmp_path, clock):
    h = History(backend.database(tmp_path / "data"), clock=clock)
    yield h
    h.close()


def article_session() -> Session:
    s = Session()
    s.turn = 1
    s.messages = [
        {
            "role": "user",
            "content": "Where is my order #48291? It was supposed to arrive yesterday.",
            "turn": 1,
            "attachments": [{"kind": "image", "filename": "tracking.png", "width": 40, "height": 30}],
        },
        {
            "role": "assistant",
            "content": "Order 48291 is in transit with UPS and arrives tomorrow.",
            "turn": 1,
            "model": "gemma-3-27b",
        },
    ]
    s.history = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Where is my order #48291?"},
                {"type": "image_url", "image_url": {"url": png_data_url()}},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "check_order_status", "arguments": '{"order_id": "48291"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": '{"order_id": "48291", "status": "in_transit"}'},
        {"role": "assistant", "content": "Order 48291 is in transit with UPS and arrives tomorrow."},
    ]
    s.routes = [
        {
            "model": "gemma-3-27b",
            "category": "vision",
            "reason": "A screenshot is attached, so a vision model reads it.",
            "rule": "vision",
            "turn": 1,
            "est_tokens": 2400,
            "context_window": 131072,
        }
    ]
    s.tool_calls = [
        {
            "call_id": "call_1",
            "name": "check_order_status",
            "arguments": {"order_id": "48291"},
            "ok": True,
            "result": {"order_id": "48291", "status": "in_transit"},
            "error": None,
            "duration_ms": 12.0,
            "turn": 1,
        }
    ]
    s.usage = [
        {
            "model": "gemma-3-27b",
            "purpose": "tool_round",
            "prompt_tokens": 2100,
            "completion_tokens": 20,
            "estimated": False,
            "latency_ms": 300.0,
            "turn": 1,
        },
        {
            "model": "gemma-3-27b",
            "purpose": "answer",
            "prompt_tokens": 2200,
            "completion_tokens": 30,
            "estimated": False,
            "latency_ms": 280.0,
            "turn": 1,
        },
    ]
    s.ticket = {
        "ticket_id": "TCK-0001",
        "customer": None,
        "order_ids": ["48291"],
        "category": "order_status",
        "intent_summary": "Where is order 48291?",
        "sentiment": "neutral",
        "frustration": 0,
        "priority": "normal",
        "language": "en",
        "actions_taken": [{"tool": "check_order_status", "ok": True, "outcome": "in transit"}],
        "status": "resolved",
        "escalation_ticket_id": None,
        "next_steps": [],
    }
    s.ticket_fields = {"category": "order_status"}
    return s


def test_round_trip(hist):
    s = article_session()
    s.history = [m for m in s.history if not isinstance(m.get("content"), list)]  # no image: exact equality
    hist.save(s)
    loaded = hist.load(s.conversation_id)
    assert stored_fields(loaded) == stored_fields(s)
    assert hist.load("no-such-id") is None


def test_images_are_stripped_but_metadata_kept(hist):
    s = article_session()
    hist.save(s)
    loaded = hist.load(s.conversation_id)
    parts = loaded.history[0]["content"]
    assert parts[0] == {"type": "text", "text": "Where is my order #48291?"}
    assert parts[1] == {"type": "text", "text": "[image: tracking.png 40x30, not stored]"}
    assert loaded.messages[0]["attachments"] == s.messages[0]["attachments"]
    assert s.history[0]["content"][1]["type"] == "image_url"  # the live session is not modified
    [raw] = hist.db.execute("SELECT snapshot FROM conversations")
    assert "base64" not in raw["snapshot"]


def test_image_size_read_from_the_data_when_no_metadata(hist):
    s = Session()
    s.history = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": png_data_url(64, 48)}}]}]
    hist.save(s)
    assert hist.load(s.conversation_id).history[0]["content"][0]["text"] == "[image: image 64x48, not stored]"


def test_ticket_versions_only_on_change(hist, clock):
    cid = "conv-a"
    t1 = {"ticket_id": "TCK-1", "status": "pending_customer", "order_ids": ["48291"]}
    assert hist.record_ticket(cid, t1) is True
    assert hist.record_ticket(cid, dict(reversed(list(t1.items())))) is False  # same content, other key order
    clock.t += 5
    t2 = t1 | {"status": "escalated", "escalation_ticket_id": "ESC-1A2B3C"}
    assert hist.record_ticket(cid, t2) is True
    versions = hist.ticket_versions(cid)
    assert [v["version"] for v in versions] == [1, 2]
    assert [v["ticket"]["status"] for v in versions] == ["pending_customer", "escalated"]
    assert versions[1]["saved_at"] - versions[0]["saved_at"] == 5
    assert hist.ticket_versions("other") == []


def test_save_records_the_ticket_once(hist):
    s = article_session()
    hist.save(s)
    hist.save(s)
    assert len(hist.ticket_versions(s.conversation_id)) == 1


def test_crash_mid_turn_loses_nothing_saved(backend, tmp_path):
    first = History(backend.database(tmp_path))
    s = Session()
    s.turn = 1
    s.messages.append({"role": "user", "content": "Where is my order #48291?", "turn": 1, "attachments": []})
    first.save(s)
    s.tool_calls.append(
        {
            "call_id": "call_1",
            "name": "check_order_status",
            "arguments": {"order_id": "48291"},
            "ok": True,
            "result": {"status": "in_transit"},
            "error": None,
            "duration_ms": 9.0,
            "turn": 1,
        }
    )
    first.save(s)
    # The process dies here, before the answer: no close(), a fresh connection reads the database.
    second = History(backend.database(tmp_path))
    loaded = second.load(s.conversation_id)
    assert loaded is not None
    assert loaded.messages == s.messages and loaded.tool_calls == s.tool_calls
    assert loaded.turn == 1
    second.close()
    first.close()


def test_export_import_round_trip_without_secrets(hist):
    s = article_session()
    s.routes[0]["api_key"] = "sk-live-SECRET"
    s.tool_calls[0]["result"]["settings"] = {"base_url": "https://api.oxlo.ai/v1"}
    hist.save(s)
    text = hist.export_json(s)
    doc = json.loads(text)
    assert doc["format"] == FORMAT == "supportbot.conversation/1"
    assert "SECRET" not in text and "api_key" not in text and "settings" not in text
    assert s.conversation_id not in text  # the id is a capability; a shared file must not open the original
    assert [v["version"] for v in doc["ticket_versions"]] == [1]
    back = hist.import_json(text)
    assert back.conversation_id != s.conversation_id
    assert back.messages == s.messages and back.tool_calls[0]["arguments"] == {"order_id": "48291"}
    assert back.ticket == s.ticket and back.usage == s.usage and back.turn == s.turn
    assert back.routes[0]["reason"] == s.routes[0]["reason"] and "api_key" not in back.routes[0]
    # The model's memory is rebuilt from the visible messages, never read from the file.
    assert back.history == [
        {
            "role": "user",
            "content": "Where is my order #48291? It was supposed to arrive yesterday.\n"
            "[screenshot tracking.png, 40x30: not available in this copy]",
        },
        {"role": "assistant", "content": "Order 48291 is in transit with UPS and arrives tomorrow."},
    ]
    again = json.loads(hist.export_json(back))
    assert again["conversation"] == doc["conversation"] | {"history": back.history}  # nothing else changes


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("not json at all", "not a JSON file"),
        ('{"format": "something/2", "conversation": {}}', "expected format 'supportbot.conversation/1'"),
        ("[1, 2]", "not a supportbot conversation export"),
        (json.dumps({"format": FORMAT}), "missing the 'conversation' object"),
        (json.dumps({"format": FORMAT, "conversation": {"messages": "hello"}}), "conversation.messages"),
        (json.dumps({"format": FORMAT, "conversation": {"turn": -1}}), "conversation.turn"),
    ],
)
def test_bad_import_is_a_clear_error(hist, text, says):
    with pytest.raises(CatalogError) as err:
        hist.import_json(text)
    assert err.value.entry == "import"
    assert says in str(err.value)


def test_markdown_transcript(hist):
    s = article_session()
    md = hist.export_markdown(s)
    assert md.startswith("# TCK-0001")
    assert "## Turn 1" in md
    assert "Where is my order #48291?" in md
    assert "- tracking.png (image, 40x30)" in md
    assert "A screenshot is attached, so a vision model reads it." in md and "`gemma-3-27b`" in md
    assert "<summary>Tool <code>check_order_status</code> (ok, 12 ms)</summary>" in md
    assert '"order_id": "48291"' in md and '"status": "in_transit"' in md
    assert "Order 48291 is in transit with UPS and arrives tomorrow." in md
    assert "2 request(s), 4,300 prompt + 50 completion tokens" in md
    assert "## Ticket" in md and '"category": "order_status"' in md
    assert s.conversation_id not in md
    # order: customer, route, tool call, answer
    positions = [md.index(x) for x in ("Where is my order", "**Route:**", "check_order_status", "**Assistant:**")]
    assert positions == sorted(positions)


def test_purge_by_age(hist, clock):
    old, recent = Session(), Session()
    hist.save(old)
    hist.record_ticket(old.conversation_id, {"ticket_id": "TCK-OLD"})
    clock.t += 10 * DAY
    hist.save(recent)
    assert hist.purge_older_than(7) == 1
    assert hist.load(old.conversation_id) is None and hist.ticket_versions(old.conversation_id) == []
    assert hist.load(recent.conversation_id) is not None
    assert hist.purge_older_than(7, now=clock.t + 8 * DAY) == 1
    assert hist.load(recent.conversation_id) is None


def test_leaves_other_tables_alone_and_refuses_a_foreign_layout(backend, tmp_path):
    db = backend.database(tmp_path / "shared")
    db.execute("CREATE TABLE notes (id TEXT PRIMARY KEY)")
    db.execute("INSERT INTO notes (id) VALUES ('48291')")
    h = History(db)
    h.save(Session())
    h.purge_older_than(0, now=10**12)
    assert db.execute("SELECT id FROM notes") == [{"id": "48291"}]
    other = backend.database(tmp_path / "other")
    other.execute("CREATE TABLE conversations (conversation_id TEXT, body TEXT)")
    with pytest.raises(SupportbotError, match="'conversations' table with another layout"):
        History(other)


def test_an_export_never_carries_the_id_of_the_conversation_it_was_forked_from(hist):
    s = article_session()
    s.forked_from = "the-original-conversation-id-xyz"
    exported = hist.export_json(s)
    assert "the-original-conversation-id-xyz" not in exported
    assert s.conversation_id not in exported
    assert hist.import_json(exported).forked_from is None
