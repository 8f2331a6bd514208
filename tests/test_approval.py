"""Approval for sensitive tools (issue 11 item 6): with SUPPORTBOT_CONFIRM_TOOLS the agent pauses before
those calls; the turn's event ends with the call kept in the session (and its stored snapshot); approving
runs the tool and resumes the agent loop in a new event, denying sends the model an error result.

The agent and the conversation against the offline engine (its rules call request_refund for a refund and
escalate_to_human for an angry customer) and the scripted model (a round of several calls); the UI through
gradio_client against a launched app.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from supportbot.config import Settings
from supportbot.conversation import TurnRunner
from supportbot.engine import OfflineEngine
from supportbot.errors import CatalogError, ConfigError, SupportbotError
from supportbot.events import (
    ApprovalRequested,
    Done,
    FallbackStarted,
    TicketUpdated,
    ToolCallFinished,
    ToolCallStarted,
)
from supportbot.services import Services
from supportbot.session import Session
from supportbot.storage.counters import APP_SCOPE
from supportbot.storage.history import import_json
from supportbot.testing import ScriptedModel, error, reply, tool_call
from supportbot.tools.rounds import DENIED
from supportbot.ui import render

REFUND = "I'd like a refund for order #48258, it never arrived."  # 20 days late: the policy approves 181.49 EUR
ANGRY = "This is ridiculous!!! My order #48291 is late AGAIN. I want to talk to a human NOW."
BOTH = ("request_refund", "escalate_to_human")


def settings(tmp_path: Path, **overrides: Any) -> Settings:
    base = {"data_dir": tmp_path, "engine": "offline", "max_retries": 0, "confirm_tools": ",".join(BOTH)}
    return Settings.load(base | overrides, environ={}, dotenv_path=None)


@pytest.fixture
def engine() -> OfflineEngine:
    return OfflineEngine()


@pytest.fixture
def runner(tmp_path: Path, engine: OfflineEngine) -> TurnRunner:
    return TurnRunner(Services.create(settings(tmp_path), engine))


def turn(runner: TurnRunner, session: Session, text: str, **kwargs) -> list:
    async def go():
        return [e async for e in runner.run(session, text, **kwargs)]

    return asyncio.run(go())


def decide(runner: TurnRunner, session: Session, approved: bool, call_id: str | None = None, **kwargs) -> list:
    async def go():
        cid = call_id if call_id is not None else session.pending_call["call_id"]
        return [e async for e in runner.resume(session, cid, approved, **kwargs)]

    return asyncio.run(go())


def refunds(runner: TurnRunner, session: Session, order: str = "48258") -> list[dict]:
    return runner.s.store.sandbox(session.conversation_id).refunds_for_order(order)


# --- the setting ------------------------------------------------------------------------------------


def test_the_setting_is_a_list_of_tool_names_on_by_default_only_on_a_space():
    load = Settings.load
    assert load(environ={}, dotenv_path=None).confirm_tools == ()
    assert load(environ={"SPACE_ID": "me/bot"}, dotenv_path=None).confirm_tools == BOTH
    env = {"SPACE_ID": "me/bot", "SUPPORTBOT_CONFIRM_TOOLS": "none"}
    assert load(environ=env, dotenv_path=None).confirm_tools == ()
    env = {"SUPPORTBOT_CONFIRM_TOOLS": " request_refund ,request_refund, update_ticket "}
    assert load(environ=env, dotenv_path=None).confirm_tools == ("request_refund", "update_ticket")


def test_an_unknown_tool_name_stops_start_up_naming_the_variable_and_the_name(tmp_path: Path):
    with pytest.raises(ConfigError) as info:
        Services.create(settings(tmp_path, confirm_tools="request_refund,refund_everything"), OfflineEngine())
    message = str(info.value)
    assert message.startswith("SUPPORTBOT_CONFIRM_TOOLS") and "'refund_everything'" in message
    assert "request_refund, " in message and "escalate_to_human" in message  # the names that exist


# --- pause, approve, deny (offline engine) ---------------------------------------------------------------


def test_a_refund_pauses_before_the_call_and_the_event_ends(runner: TurnRunner, engine: OfflineEngine):
    session = Session()
    events = turn(runner, session, REFUND)
    paused = [e for e in events if isinstance(e, ApprovalRequested)]
    assert len(paused) == 1 and paused[0].name == "request_refund"
    assert isinstance(events[-1], Done) and events[-1].finish_reason == "approval"
    assert not [e for e in events if isinstance(e, ToolCallStarted | ToolCallFinished)]  # nothing ran
    assert refunds(runner, session) == [] and session.tool_calls == []
    assert not session.busy and len(engine.requests) == 1
    view = session.to_json()["pending_call"]
    assert view == {
        "call_id": paused[0].call_id,
        "name": "request_refund",
        "arguments": {"order_id": "48258", "reason": REFUND},
        "turn": 1,
        "model": "llama-3.3-70b",
    }
    assert not [m for m in session.messages if m["role"] == "assistant"]
    # The chat shows the call waiting, in every steps mode.
    for mode in ("all", "tools only", "hidden"):
        step = render.chat_view(session, mode)[-1]
        assert step["metadata"]["title"] == "⏸️ request\\_refund awaits approval" and "48258" in step["content"]


def test_approving_runs_the_tool_and_the_agent_answers(runner: TurnRunner, engine: OfflineEngine):
    session = Session()
    turn(runner, session, REFUND)
    events = decide(runner, session, True)
    [refund] = refunds(runner, session)
    assert (refund["outcome"], refund["amount"]) == ("approved", 181.49)
    assert [(c["name"], c["ok"]) for c in session.tool_calls] == [("request_refund", True), ("update_ticket", True)]
    answer = session.messages[-1]
    assert answer["role"] == "assistant" and "181.49" in answer["content"] and answer["turn"] == 1
    assert session.pending_call is None and isinstance(events[-1], TicketUpdated)
    # The model received the refund's result for the paused call id, and answered from it.
    last = engine.requests[-1]["messages"]
    tool_msgs = [m for m in last if m["role"] == "tool"]
    assert tool_msgs[0]["tool_call_id"] == last[-3]["tool_calls"][0]["id"]
    assert json.loads(tool_msgs[0]["content"])["outcome"] == "approved"
    # Memory: the message, the round, the answer; the ticket follows.
    assert [m["role"] for m in session.history] == ["user", "assistant", "tool", "tool", "assistant"]
    assert session.ticket["category"] == "refund" and session.ticket["order_ids"] == ["48258"]
    assert [u["purpose"] for u in session.usage] == ["answer", "tool_round"]


def test_denying_tells_the_model_and_nothing_is_refunded(runner: TurnRunner, engine: OfflineEngine):
    session = Session()
    turn(runner, session, REFUND)
    decide(runner, session, False)
    assert refunds(runner, session) == []
    denied = session.tool_calls[0]
    assert (denied["name"], denied["ok"], denied["error"], denied["result"]) == ("request_refund", False, DENIED, None)
    assert denied["arguments"] == {"order_id": "48258", "reason": REFUND}
    sent = [m for m in engine.requests[-1]["messages"] if m["role"] == "tool"]
    assert json.loads(sent[0]["content"]) == {"error": DENIED}
    assert "did not approve `request_refund`" in session.messages[-1]["content"]
    assert "approved**" not in session.messages[-1]["content"]
    assert "🚫 request\\_refund not approved" in [m.get("metadata", {}).get("title") for m in render.chat_view(session)]


def test_an_escalation_waits_too_and_the_calls_before_it_run(runner: TurnRunner):
    session = Session()
    turn(runner, session, ANGRY)
    assert session.pending_call["name"] == "escalate_to_human"
    assert [c["name"] for c in session.tool_calls] == ["check_order_status"]  # ran before the paused call
    assert runner.s.store.sandbox(session.conversation_id).list_escalations() == []
    decide(runner, session, True)
    [ticket] = runner.s.store.sandbox(session.conversation_id).list_escalations()
    assert ticket["ticket_id"] in session.messages[-1]["content"]
    assert [c["name"] for c in session.tool_calls] == ["check_order_status", "escalate_to_human", "update_ticket"]


def test_a_new_message_while_a_call_waits_is_refused_naming_the_call(runner: TurnRunner, engine: OfflineEngine):
    session = Session()
    turn(runner, session, REFUND)
    before = (json.dumps(session.to_json()), list(session.history), len(engine.requests))
    with pytest.raises(SupportbotError) as info:
        turn(runner, session, "Hello? Anyone there?")
    message = str(info.value)
    assert "request_refund" in message and session.pending_call["call_id"] in message and "Approve or deny" in message
    assert (json.dumps(session.to_json()), session.history, len(engine.requests)) == before


def test_a_wrong_or_spent_call_id_is_refused(runner: TurnRunner):
    session = Session()
    with pytest.raises(SupportbotError, match="No call awaits approval"):
        decide(runner, session, True, call_id="call_x")
    turn(runner, session, REFUND)
    cid = session.pending_call["call_id"]
    with pytest.raises(SupportbotError, match="does not await approval; request_refund"):
        decide(runner, session, True, call_id="call_x")
    decide(runner, session, True)
    with pytest.raises(SupportbotError, match="No call awaits approval"):
        decide(runner, session, True, call_id=cid)  # approving twice
    assert len(refunds(runner, session)) == 1


def test_the_resumed_requests_count_in_the_budget(tmp_path: Path, engine: OfflineEngine):
    runner = TurnRunner(Services.create(settings(tmp_path, requests_per_day=50), engine))
    budget = runner.s.budget("ip:203.0.113.7")
    session = Session()
    turn(runner, session, REFUND, budget=budget)
    assert runner.s.counters.used([APP_SCOPE])[APP_SCOPE] == 1
    decide(runner, session, True, budget=budget)
    assert runner.s.counters.used([APP_SCOPE])[APP_SCOPE] == 2 == len(engine.requests)


# --- storage: a reload keeps the pause; an import never carries one ------------------------------------


def test_the_pause_survives_a_reload_and_approving_it_forks(runner: TurnRunner):
    session = Session()
    turn(runner, session, REFUND)
    original = session.conversation_id
    loaded = runner.load(original)
    assert loaded.pending_call == session.pending_call and loaded.history == session.history
    decide(runner, loaded, True)
    assert loaded.conversation_id != original and loaded.forked_from == original
    assert len(refunds(runner, loaded)) == 1 and refunds(runner, Session(conversation_id=original)) == []
    assert runner.load(original).pending_call is not None  # the shared link still shows the call waiting


def test_an_export_never_carries_the_pending_call_and_an_import_carrying_one_is_refused(runner: TurnRunner):
    session = Session()
    turn(runner, session, REFUND)
    doc = json.loads(runner.s.history.export_json(session))
    assert "pending_call" not in doc["conversation"]
    assert import_json(json.dumps(doc)).pending_call is None
    doc["conversation"]["pending_call"] = runner.s.history.load(session.conversation_id).pending_call
    with pytest.raises(CatalogError) as info:
        import_json(json.dumps(doc))
    assert "conversation.pending_call" in str(info.value) and "cannot carry a call awaiting approval" in str(info.value)


def test_a_stored_pending_call_that_cannot_resume_is_refused_on_load(runner: TurnRunner):
    session = Session()
    turn(runner, session, REFUND)
    session.pending_call = {**session.pending_call, "messages": [{"role": "user", "content": "hi"}] * 2}
    runner.s.history.save(session)
    with pytest.raises(CatalogError, match="pending_call.*tool calls"):
        runner.load(session.conversation_id)


def test_a_pending_call_a_model_chose_renders_inert():
    # The tool name, arguments, call id and any text come from a model: none may become markup or a remote image.
    pending = {
        "call_id": "c`1<b>x</b>",
        "name": "<img src=x onerror=alert(1)>",
        "arguments": '{"note": "![x](http://203.0.113.9/x.png)"}',
        "turn": 1,
        "model": "m",
        "text": "Sure. ![y](http://203.0.113.9/y.png)",
    }
    prompt = render.approval_prompt(pending)
    assert not re.search(r"(?<!\\)[<>`\[\]!]", prompt)  # every bracket, backtick and bang escaped
    said, step = render.pending_steps(pending)
    assert "![y]" not in said["content"] and "](http://203.0.113.9/y.png)" in said["content"]  # a link, not an image
    assert (
        not re.search(r"(?<!\\)<", step["metadata"]["title"]) and step["content"].count("```") == 2
    )  # arguments stay in code


# --- several calls in one round (the scripted model) -----------------------------------------------------


def test_a_round_of_several_calls_pauses_at_each_sensitive_one_in_order(tmp_path: Path):
    model = ScriptedModel(
        reply(
            tool_call("check_order_status", {"order_id": "48258"}, id="c1"),
            tool_call("request_refund", {"order_id": "48258", "reason": "lost"}, id="c2"),
            tool_call("escalate_to_human", {"reason": "lost parcel"}, id="c3"),
            tool_call("update_ticket", {"category": "refund"}, id="c4"),
        ),
        reply("Refunded; a colleague was not needed."),
    )
    live = {"engine": "live", "api_key": "k"}
    runner = TurnRunner(Services.create(settings(tmp_path, **live), transport=model))
    session = Session()
    turn(runner, session, REFUND)
    assert session.pending_call["call_id"] == "c2" and [c["call_id"] for c in session.tool_calls] == ["c1"]
    events = decide(runner, session, True)
    assert session.pending_call["call_id"] == "c3" and [c["call_id"] for c in session.tool_calls] == ["c1", "c2"]
    assert isinstance(events[-1], Done) and events[-1].finish_reason == "approval"
    assert len(model.chat_bodies) == 1  # no request while the round is unfinished
    decide(runner, session, False)
    assert [(c["call_id"], c["ok"]) for c in session.tool_calls] == [
        ("c1", True),
        ("c2", True),
        ("c3", False),
        ("c4", True),
    ]
    second = model.chat_bodies[1]["messages"]
    assert [m["role"] for m in second] == ["system", "user", "assistant", "tool", "tool", "tool", "tool"]
    assert [m["tool_call_id"] for m in second[3:]] == ["c1", "c2", "c3", "c4"]  # every call answered, in order
    assert json.loads(second[5]["content"]) == {"error": DENIED}
    assert session.messages[-1]["content"] == "Refunded; a colleague was not needed."
    assert [m["role"] for m in session.history] == ["user", "assistant", "tool", "tool", "tool", "tool", "assistant"]
    assert len(refunds(runner, session)) == 1


def test_a_resumed_turn_whose_model_fails_falls_back_with_the_approved_round_kept(tmp_path: Path):
    # Qwen asks for a refund; approved, the refund runs; Qwen then fails (no text shown): Llama 3.3 answers
    # from the same round, and the refund is not asked for or run again.
    answers = {
        "qwen-3-32b": [
            reply(tool_call("request_refund", {"order_id": "48258", "reason": "lost"}, id="r1")),
            error(503),
        ],
        "llama-3.3-70b": [reply("Your refund of 181.49 EUR is on its way.")],
    }
    model = ScriptedModel(*[lambda body: answers[body["model"]].pop(0)] * 3)
    runner = TurnRunner(Services.create(settings(tmp_path, engine="live", api_key="k"), transport=model))
    session = Session()
    turn(runner, session, "Where is my order #48291?", selected="qwen-3-32b")
    events = decide(runner, session, True)
    assert [b["model"] for b in model.chat_bodies] == ["qwen-3-32b", "qwen-3-32b", "llama-3.3-70b"]
    assert next(e for e in events if isinstance(e, FallbackStarted)).failed == "qwen-3-32b"
    assert len(refunds(runner, session)) == 1 and [c["call_id"] for c in session.tool_calls] == ["r1"]
    assert [m["role"] for m in model.chat_bodies[-1]["messages"]] == ["system", "user", "assistant", "tool"]
    assert session.routes[0]["fallback_from"] == "qwen-3-32b" and session.messages[-1]["model"] == "llama-3.3-70b"
    assert [m["role"] for m in session.history] == ["user", "assistant", "tool", "assistant"]


def test_without_the_setting_nothing_pauses(tmp_path: Path, engine: OfflineEngine):
    runner = TurnRunner(Services.create(settings(tmp_path, confirm_tools=""), engine))
    session = Session()
    turn(runner, session, REFUND)
    assert session.pending_call is None and len(refunds(runner, session)) == 1


# --- through the UI: gradio_client against a launched app ------------------------------------------------


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory):
    """A launched app asking approval for both tools, one turn at a time, and its services (to read the shop)."""
    from tests.conftest import launch_app

    made: dict[str, Services] = {}

    def services(s: Settings) -> Services:
        made["services"] = Services.create(s)
        return made["services"]

    demo, url = launch_app(
        tmp_path_factory.mktemp("approval-app"), services, confirm_tools=",".join(BOTH), concurrency_limit=1
    )
    yield url, made["services"]
    demo.close()


def chat(client: Client, text: str) -> dict:
    client.predict({"text": text, "files": []}, api_name="/chat")
    return client.predict(api_name="/session")


def test_ui_chat_pauses_and_approve_yes_records_the_refund_and_answers(app):
    url, services = app
    client = Client(url, verbose=False)
    session = chat(client, REFUND)
    pending = session["pending_call"]
    assert pending["name"] == "request_refund" and pending["arguments"]["order_id"] == "48258"
    assert session["tool_calls"] == [] and not [m for m in session["messages"] if m["role"] == "assistant"]
    shop = services.store.sandbox(session["conversation_id"])
    assert shop.refunds_for_order("48258") == []
    client.predict(pending["call_id"], "yes", api_name="/approve")
    after = client.predict(api_name="/session")
    assert after["pending_call"] is None and len(shop.refunds_for_order("48258")) == 1
    assert after["tool_calls"][0]["name"] == "request_refund" and after["tool_calls"][0]["result"]["amount"] == 181.49
    assert "181.49" in after["messages"][-1]["content"]


def test_ui_approve_no_records_nothing_and_the_answer_acknowledges(app):
    url, services = app
    client = Client(url, verbose=False)
    pending = chat(client, REFUND)["pending_call"]
    client.predict(pending["call_id"], "no", api_name="/approve")
    after = client.predict(api_name="/session")
    assert services.store.sandbox(after["conversation_id"]).refunds_for_order("48258") == []
    assert after["tool_calls"][0]["ok"] is False and after["tool_calls"][0]["error"] == DENIED
    assert "did not approve" in after["messages"][-1]["content"]


def test_ui_refuses_a_message_a_bad_answer_and_a_wrong_id_while_a_call_waits(app):
    url, _ = app
    client = Client(url, verbose=False)
    pending = chat(client, REFUND)["pending_call"]
    with pytest.raises(AppError, match="awaits a human agent's approval: request_refund"):
        client.predict({"text": "hello?", "files": []}, api_name="/chat")
    with pytest.raises(AppError, match="Answer yes"):
        client.predict(pending["call_id"], "maybe", api_name="/approve")
    with pytest.raises(AppError, match="does not await approval"):
        client.predict("call_forged", "yes", api_name="/approve")
    assert client.predict(api_name="/session")["pending_call"] == pending  # still waiting, untouched


def test_ui_the_pause_holds_no_slot_and_survives_a_reload(app):
    url, services = app
    first = Client(url, verbose=False)
    session = chat(first, REFUND)  # paused; the app runs one turn at a time
    other = chat(Client(url, verbose=False), "Where is my order #48291?")  # so this one needs the slot back
    assert other["messages"][-1]["role"] == "assistant" and other["pending_call"] is None
    reloaded = Client(url, verbose=False)
    shown = reloaded.predict(session["conversation_id"], api_name="/load")
    assert shown["pending_call"] == session["pending_call"]
    reloaded.predict(session["pending_call"]["call_id"], True, api_name="/approve")
    forked = reloaded.predict(api_name="/session")
    assert forked["forked_from"] == session["conversation_id"] and "181.49" in forked["messages"][-1]["content"]
    assert services.store.sandbox(session["conversation_id"]).refunds_for_order("48258") == []
