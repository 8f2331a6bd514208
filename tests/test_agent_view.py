"""The agent view, the cost panel and the recent-conversations list, rendered without a server."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from supportbot.config import Settings
from supportbot.conversation import TurnRunner
from supportbot.pricing import load_pricing
from supportbot.services import Services
from supportbot.session import Session
from supportbot.storage.history import import_json
from supportbot.ticket.record import ticket_changes
from supportbot.ui import agent_view, links, usage_view
from supportbot.ui.render import LiveTurn, chat_view

SRC = {"source": "test fixture", "as_of": "2026-01-01", "verified": True}


@pytest.fixture
def runner(tmp_path: Path) -> TurnRunner:
    settings = Settings.load({"data_dir": tmp_path, "engine": "offline"}, environ={}, dotenv_path=None)
    return TurnRunner(Services.create(settings))


def say(runner: TurnRunner, session: Session, text: str) -> None:
    async def go() -> None:
        async for _ in runner.run(session, text):
            pass

    asyncio.run(go())


def test_the_timeline_of_a_turn_goes_route_tools_ticket_cost(runner: TurnRunner):
    session = Session()
    say(runner, session, "Where is my order #48291?")
    html = agent_view.timeline_html(session, agent_view.LATEST, runner.s.pricing, "pro")
    order = [html.index(k) for k in ("sb-route", "check_order_status", "sb-ticket", "sb-cost", "sb-tl-foot")]
    assert order == sorted(order)  # one timeline, in the order things happened
    assert "Routed to <b>llama-3.3-70b</b>" in html and "A routine support question" in html
    assert "{&quot;order_id&quot;: &quot;48291&quot;}" in html  # the arguments, escaped
    call = session.tool_calls[0]
    assert f"{call['duration_ms']:.1f} ms" in html
    assert "<s>—</s> → <b>pending_customer</b>" in html  # what the turn changed in the ticket (a new one)
    assert "2 requests (1 tool round, 1 answer)" in html and "flat on Oxlo Pro" in html
    assert "This conversation (2 requests)" in html


def test_the_picker_follows_the_latest_turn_and_shows_an_older_one(runner: TurnRunner):
    session = Session()
    say(runner, session, "Where is my order #48291?")
    say(runner, session, "What is your return policy for opened items?")
    assert [v for _, v in agent_view.turn_choices(session)] == [agent_view.LATEST, "2", "1"]
    latest = agent_view.timeline_html(session, agent_view.LATEST, runner.s.pricing, "pro")
    first = agent_view.timeline_html(session, "1", runner.s.pricing, "pro")
    assert "search_knowledge_base" in latest and "check_order_status" not in latest
    assert "check_order_status" in first and "Turn 1 of 2" in first
    assert agent_view.chosen_turn(session, "99") == 2 and agent_view.chosen_turn(session, {"x": 1}) == 2


def test_the_timeline_escapes_what_tools_and_visitors_send(runner: TurnRunner):
    session = Session()
    session.messages.append({"role": "user", "content": "<img src=x onerror=alert(1)>", "turn": 1})
    session.turn = 1
    session.tool_calls.append(
        {
            "turn": 1,
            "call_id": "c1",
            "name": "<b>tool</b>",
            "arguments": {"q": "<script>x</script>"},
            "ok": True,
            "result": {"path": "/etc/passwd"},
            "error": None,
            "duration_ms": 1.0,
        }
    )
    html = agent_view.timeline_html(session, agent_view.LATEST, runner.s.pricing, "pro")
    assert "<img" not in html and "<script>" not in html and "<b>tool</b>" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html


def test_a_live_turn_shows_the_message_and_pending_calls_at_once(runner: TurnRunner):
    session = Session()
    live = LiveTurn(1, user="Where is my order #48291?", files=["a.log"])
    live.pending["c1"] = ("check_order_status", '{"order_id": "48291"}')
    chat = chat_view(session, "compact", live)
    assert [m["content"] for m in chat] == ["Where is my order #48291?", "📎 *a\\.log*"]
    html = agent_view.timeline_html(session, agent_view.LATEST, runner.s.pricing, "pro", live)
    assert "check_order_status</b> running…" in html and "Where is my order #48291?" in html


def test_ticket_changes_name_fields_and_list_items():
    before = {"status": "open", "order_ids": ["1"], "customer": None, "ticket_id": "T"}
    after = {"status": "resolved", "order_ids": ["1", "2"], "customer": {"id": "C1", "email": None}, "ticket_id": "T"}
    assert ticket_changes(before, after) == [
        {"field": "customer", "before": None, "after": {"id": "C1", "email": None}},
        {"field": "order_ids", "added": ["2"], "removed": []},
        {"field": "status", "before": "open", "after": "resolved"},
    ]
    assert ticket_changes(after, after) == []


def test_ticket_changes_are_in_the_session_and_survive_export_and_import(runner: TurnRunner):
    session = Session()
    say(runner, session, "Where is my order #48291?")
    changes = session.to_json()["ticket_changes"]
    assert changes[0]["turn"] == 1
    assert {"field": "status", "before": None, "after": "pending_customer"} in changes[0]["changes"]
    copy = import_json(runner.s.history.export_json(session))
    assert copy.ticket_changes == json.loads(json.dumps(session.ticket_changes))
    runner.s.history.save(session)
    assert runner.load(session.conversation_id).ticket_changes == session.ticket_changes


# ---------------------------------------------------------------- the cost panel


def _pricing(tmp_path: Path):
    doc = {
        "plans": [{"name": "pro", "monthly_usd": 30.0, "requests_per_day": 100, **SRC}],
        "providers": {
            "alpha": {"name": "Alpha AI", "models": {"m1": {"input": 1.0, "output": 1.0, **SRC}, "m2": None}},
            "beta": {"name": "Beta Cloud", "models": {"m1": None, "m2": None}},
        },
        "equivalents": {"m2": {"like": ["m1"], "basis": "m1's size", "source": "cards", "as_of": "2026-01-01"}},
    }
    path = tmp_path / "pricing.json"
    path.write_text(json.dumps(doc))
    return load_pricing(path)


def test_the_cost_panel_marks_estimates_and_partial_totals_and_never_says_na(tmp_path: Path):
    pricing = _pricing(tmp_path)
    session = Session()
    session.usage = [
        {
            "turn": 1,
            "model": "m1",
            "purpose": "answer",
            "prompt_tokens": 10_000,
            "completion_tokens": 0,
            "latency_ms": 1,
        },
        {
            "turn": 2,
            "model": "m2",
            "purpose": "answer",
            "prompt_tokens": 20_000,
            "completion_tokens": 0,
            "latency_ms": 1,
        },
    ]
    view = usage_view.render(session, pricing, "pro")
    # flat: 30 / (100 x 30) = $0.01 a request, $0.02 in all; alpha: 10K x $1/M = $0.01, m2 as m1: $0.02 (≈)
    assert "This conversation (2 requests): <b>$0.02</b> flat on Oxlo Pro" in view.html
    assert "≈$0.03" in view.html and "1.5×" in view.html
    assert "n/a" not in view.html
    assert "Beta Cloud lists no price for m1, m2 (nor an equivalent), so its total is partial: 0 of 2" in view.html
    assert "priced as <code>m1</code>, an estimate (m1&#x27;s size; source: cards, 2026-01-01)" in view.html
    assert set(view.frame["turn"]) == {"0", "1", "2"} and view.turns == ["0", "1", "2"]  # whole turns
    assert "Oxlo Pro (flat)" in view.colors and "Beta Cloud (partial)" in view.colors
    one = Session()
    one.usage = session.usage[:1]
    assert "(1 request)" in usage_view.render(one, pricing, "pro").html
    assert usage_view.plural(1, "request") == "1 request" and usage_view.plural(2, "request") == "2 requests"


# ---------------------------------------------------------------- this browser's recent conversations


def test_a_forged_browser_list_is_read_as_at_most_twelve_well_formed_ids():
    good = [f"{'a' * 15}{i:x}" for i in range(20)]
    assert links.recent_ids("not a list") == [] and links.recent_ids({"ids": good}) == []
    forged = ["<img src=x>", good[0], good[0], 7, None, "../../etc", *good[1:]]
    assert links.recent_ids(forged) == good[:12]
    assert links.remember(good[:12], good[5])[:2] == [good[5], good[0]] and len(links.remember(good, "x" * 16)) == 12


def test_the_recent_list_shows_only_stored_conversations_with_their_own_titles(runner: TurnRunner):
    session = Session()
    say(runner, session, "Where is my order #48291?")
    other = Session()
    say(runner, other, "What is your return policy for opened items?")
    browser_list = [other.conversation_id, "x" * 22, session.conversation_id]  # one id never stored here
    choices = links.recent_choices(browser_list, runner.load, session)
    assert choices == [
        ("What is your return policy for opened items?", other.conversation_id),
        ("Where is my order #48291? (open)", session.conversation_id),
    ]
