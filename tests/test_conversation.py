"""Whole turns through the orchestration layer, in process: prepare -> stream -> commit.

On the offline engine where the turn's content matters (routing, logs, tickets, persistence);
on the scripted model of ``supportbot.testing`` where the test is about the conversation's own
rules (what the model remembers after a failure or a stop, one turn at a time, usage and
retries in the session), so the model says exactly what the test needs.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from supportbot.config import Settings
from supportbot.conversation import TurnRunner
from supportbot.engine import OfflineEngine
from supportbot.engine.validation import validate_chat
from supportbot.errors import SupportbotError
from supportbot.events import Done, ErrorEvent, Notice, RouteChosen, TextDelta, TicketUpdated, UsageReported
from supportbot.memory import compact
from supportbot.routing.catalog import load_catalog
from supportbot.services import Services
from supportbot.session import Session
from supportbot.testing import ScriptedModel, error, reply, tool_call


@pytest.fixture
def engine() -> OfflineEngine:
    return OfflineEngine()


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    return Settings.load(
        {"data_dir": data_dir, "engine": "offline", "max_retries": 0, **overrides}, environ={}, dotenv_path=None
    )


def make_runner(data_dir: Path, engine: OfflineEngine) -> TurnRunner:
    return TurnRunner(Services.create(make_settings(data_dir), engine))


def scripted_runner(data_dir: Path, model: ScriptedModel, **overrides: Any) -> TurnRunner:
    return TurnRunner(Services.create(make_settings(data_dir, **overrides), transport=model))


@pytest.fixture
def runner(tmp_path: Path, engine: OfflineEngine) -> TurnRunner:
    return make_runner(tmp_path, engine)


def run(runner: TurnRunner, session: Session, text: str, files: list[Path] | None = None, **kwargs) -> list:
    async def go():
        return [e async for e in runner.run(session, text, files, **kwargs)]

    return asyncio.run(go())


def stop_after(runner: TurnRunner, session: Session, text: str, ready) -> list:
    """Run a turn, cancel it (the UI's stop button) once ``ready(events so far)``; the events seen."""
    seen: list = []

    async def go():
        async def consume():
            async for event in runner.run(session, text):
                seen.append(event)

        task = asyncio.create_task(consume())
        while not ready(seen):
            assert not task.done(), "the turn ended before it could be stopped"
            await asyncio.sleep(0.005)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(go())
    return seen


SLOW = {"pieces": 40, "chunk_delay_s": 0.03}  # a reply that streams for over a second


def write_log(path: Path, target_tokens: int) -> Path:
    """A realistic app log of about ``target_tokens`` tokens (2 characters a token)."""
    lines, size, i = [], 0, 0
    while size < target_tokens * 2:
        level = "ERROR" if i % 97 == 0 else "WARN" if i % 31 == 0 else "INFO"
        line = f"2026-11-27T10:{(i // 60) % 60:02d}:{i % 60:02d}.{i % 1000:03d}Z {level} [worker-{i % 7}] req-{i * 7919 % 100000:05x} handled /api/orders/{40000 + i % 9000} in {i % 500}ms\n"
        lines.append(line)
        size += len(line)
        i += 1
    path.write_text("".join(lines))
    return path


def test_the_articles_conversation_and_a_frustrated_follow_up_build_the_ticket(runner: TurnRunner):
    session = Session()
    run(runner, session, "Where is my order #48291? It was supposed to arrive yesterday and I am getting worried.")
    events = run(runner, session, "This is ridiculous!!! I want to talk to a human NOW.")
    ticket = session.ticket
    assert ticket["category"] == "order_status" and ticket["order_ids"] == ["48291"]
    assert ticket["frustration"] >= 2 and ticket["sentiment"] == "negative"
    assert ticket["escalation_ticket_id"].startswith("ESC-") and ticket["status"] == "escalated"
    assert any(isinstance(e, TicketUpdated) for e in events)
    # Persisted as it happened: a reload by id gives the same session.
    loaded = runner.s.history.load(session.conversation_id)
    assert loaded is not None and loaded.to_json() == session.to_json()
    assert runner.s.history.ticket_versions(session.conversation_id)[-1]["ticket"] == ticket


def test_spanish_goes_to_qwen_and_is_answered_in_spanish(runner: TurnRunner):
    session = Session()
    run(runner, session, "Hola, ¿dónde está mi pedido #48291? Debía llegar ayer.")
    assert session.routes[0]["model"] == "qwen-3-32b" and "Spanish" in session.routes[0]["reason"]
    assert "pedido" in session.messages[-1]["content"].lower()


def test_a_300k_token_log_goes_to_deepseek_v4_flash_whole(runner: TurnRunner, tmp_path: Path, engine: OfflineEngine):
    session = Session()
    log = write_log(tmp_path / "big.log", 300_000)
    run(runner, session, "what is wrong?", [log])
    route = session.routes[0]
    assert route["model"] == "deepseek-v4-flash" and route["rule"] == "long_context"
    sent = engine.requests[0]["messages"][-1]["content"]
    assert log.read_text()[-200:] in sent  # sent whole, fenced
    assert not session.messages[0]["attachments"][0]["reduced"]
    assert "ERROR" in session.messages[-1]["content"]


def test_a_3m_token_log_is_reduced_with_a_header_and_still_answered(
    runner: TurnRunner, tmp_path: Path, engine: OfflineEngine
):
    session = Session()
    log = write_log(tmp_path / "huge.log", 3_000_000)
    events = run(runner, session, "our service is failing, see log", [log])
    route = session.routes[0]
    assert route["rule"] == "long_context_reduced" and "reduced" in route["reason"]
    att = session.messages[0]["attachments"][0]
    assert att["reduced"] and att["sent_tokens"] <= route["reduce_logs_to"]
    assert any(isinstance(e, Notice) and "reduced" in e.text.lower() for e in events)
    sent = engine.requests[0]["messages"][-1]["content"]
    assert att["header"] in sent and len(sent) < log.stat().st_size
    done = [e for e in events if isinstance(e, Done)][0]
    assert done.ok and "ERROR" in done.text


def test_an_image_never_reaches_a_text_model_in_later_turns(tmp_path: Path):
    model = ScriptedModel(reply("That is a payment error on the checkout page."), reply("It is on its way."))
    runner = scripted_runner(tmp_path, model)
    session = Session()
    run(runner, session, "what is this?", [Path("assets/samples/checkout-error.png")])
    assert session.routes[0]["model"] == "llama-4-maverick"  # the first vision model on the default Pro plan
    first = model.chat_bodies[0]["messages"][-1]["content"]
    assert any(part["type"] == "image_url" and part["image_url"]["url"].startswith("data:image/") for part in first)
    run(runner, session, "thanks, and where is order #48291?")
    assert session.routes[1]["model"] == "llama-3.3-70b"
    later = model.chat_bodies[1]["messages"]
    assert not any(isinstance(m.get("content"), list) for m in later)
    # The model still knows a screenshot was shown, as text.
    assert "[screenshot checkout-error.png, 1440x900" in later[1]["content"]


def test_a_failed_turn_keeps_the_conversation_usable(tmp_path: Path):
    model = ScriptedModel(reply("It ships tomorrow."), error(503), reply("Returns are free within 30 days."))
    runner = scripted_runner(tmp_path, model)
    session = Session()
    run(runner, session, "Where is my order #48291?")
    history = list(session.history)
    events = run(runner, session, "and my refund?")
    assert any(isinstance(e, ErrorEvent) and e.kind == "server" for e in events)
    assert session.history == history  # nothing half-done reached the model's memory
    assert session.messages[-1]["error"] and session.messages[-1]["role"] == "assistant"
    run(runner, session, "What is your return policy?")
    assert session.messages[-1].get("error") is None and session.turn == 3
    # The third request carries the first exchange and the new question, not the failed one.
    assert [m["content"] for m in model.chat_bodies[-1]["messages"][1:]] == [
        "Where is my order #48291?",
        "It ships tomorrow.",
        "What is your return policy?",
    ]


def test_a_turn_that_fails_after_a_tool_ran_keeps_that_round_in_memory(tmp_path: Path):
    """The refund happened, so the model must know it, even though the answer failed."""
    refund = tool_call("request_refund", {"order_id": "48256", "reason": "arrived broken"}, id="call_r")
    model = ScriptedModel(reply(refund), error(500), reply("Anything else?"))
    runner = scripted_runner(tmp_path, model)
    session = Session()
    events = run(runner, session, "Order 48256 arrived broken, refund it please")
    assert [e.kind for e in events if isinstance(e, ErrorEvent)] == ["server"]
    assert [(m["role"], m.get("tool_call_id")) for m in session.history] == [
        ("user", None),
        ("assistant", None),
        ("tool", "call_r"),
        ("assistant", None),
    ]
    assert json.loads(session.history[2]["content"])["outcome"] == "approved"
    assert "failed" in session.history[-1]["content"]
    run(runner, session, "thanks")
    sent = model.chat_bodies[-1]
    validate_chat(sent)  # a history a real server accepts: every call has its result
    assert sent["messages"][1:-1] == session.history[:4]


def test_the_step_limit_keeps_the_completed_rounds_and_says_why(tmp_path: Path):
    model = ScriptedModel(reply(tool_call("check_order_status", {"order_id": "48291"})), repeat_last=True)
    runner = scripted_runner(tmp_path, model, max_tool_steps=2)
    session = Session()
    run(runner, session, "Where is my order #48291?")
    assert session.messages[-1]["error_kind"] == "step_limit"
    assert [m["role"] for m in session.history] == ["user", "assistant", "tool", "assistant", "tool", "assistant"]
    assert len(session.tool_calls) == 2 and len(model.chat_bodies) == 3


def test_empty_input_and_bad_attachments_change_nothing(runner: TurnRunner, tmp_path: Path):
    session = Session()
    with pytest.raises(SupportbotError, match="Type a message"):
        run(runner, session, "  ")
    bogus = tmp_path / "shot.png"
    bogus.write_bytes(b"GIF89a" + b"\x00" * 10)  # claims to be a GIF, is not one
    with pytest.raises(SupportbotError, match="shot.png"):
        run(runner, session, "look", [bogus])
    assert session.turn == 0 and session.messages == [] and session.history == []


def test_extraction_mode_makes_one_extra_request_and_fills_the_ticket(runner: TurnRunner, engine: OfflineEngine):
    session = Session()
    events = run(runner, session, "Where is my order #48291?", ticket_mode="extraction")
    purposes = [e.record.purpose for e in events if isinstance(e, UsageReported)]
    assert purposes.count("ticket_extraction") == 1
    assert engine.requests[-1]["response_format"]["type"] == "json_schema"
    assert session.ticket["order_ids"] == ["48291"]


def test_extraction_repairs_invalid_json_once(runner: TurnRunner, engine: OfflineEngine):
    session = Session()
    engine.inject("invalid_json", times=1)
    events = run(runner, session, "Where is my order #48291?", ticket_mode="extraction")
    purposes = [e.record.purpose for e in events if isinstance(e, UsageReported)]
    assert purposes[-2:] == ["ticket_extraction", "ticket_repair"]
    assert [e for e in events if isinstance(e, TicketUpdated)][-1].error is None


def test_compaction_is_visible_and_keeps_recent_turns():
    model = load_catalog().get("qwen-3-32b")
    history = []
    for i in range(40):
        history += [
            {"role": "user", "content": f"question {i} " + "word " * 2000},
            {"role": "assistant", "content": f"answer {i}"},
        ]
    compacted, summary = compact(history, model)
    assert compacted[0]["content"].startswith("Summary of earlier turns") and "question 0" in summary
    assert compacted[-1] == history[-1]
    # Counted by the engine's own tokenizer, not by the estimator compaction itself relies on.
    from supportbot.engine.tokens import count_messages

    assert count_messages(history) > model.context_window > count_messages(compacted)


def test_a_chosen_model_too_small_for_the_history_compacts_and_says_so(runner: TurnRunner):
    session = Session()
    session.history = [
        m
        for i in range(12)
        for m in (
            {"role": "user", "content": f"q{i} " + "lorem ipsum " * 1500},
            {"role": "assistant", "content": f"a{i}"},
        )
    ]
    events = run(runner, session, "so, any news?", selected="qwen-3-32b")
    route = [e for e in events if isinstance(e, RouteChosen)][0].decision
    assert route.model == "qwen-3-32b" and route.rule == "manual_compact"
    notes = [e.text for e in events if isinstance(e, Notice)]
    assert notes and "compacted" in notes[0]
    assert session.history[0]["content"].startswith("Summary of earlier turns")


def test_stopping_a_turn_keeps_what_arrived_and_the_history_consistent(tmp_path: Path):
    long_answer = "Our return policy gives you thirty days from delivery to send most items back. " * 3
    model = ScriptedModel(reply("It ships tomorrow."), reply(long_answer, **SLOW), reply("You're welcome."))
    runner = scripted_runner(tmp_path, model)
    session = Session()
    run(runner, session, "Where is my order #48291?")
    history = list(session.history)
    seen = stop_after(
        runner, session, "What is your return policy?", lambda ev: any(isinstance(e, TextDelta) for e in ev)
    )
    arrived = "".join(e.text for e in seen if isinstance(e, TextDelta))
    assert arrived and long_answer.startswith(arrived) and arrived != long_answer
    assert session.history == history  # the unfinished answer is forgotten
    last = session.messages[-1]
    assert last["role"] == "assistant" and last["stopped"] and last["turn"] == 2
    assert long_answer.startswith(last["content"]) and len(last["content"]) >= len(arrived)
    assert runner.s.history.load(session.conversation_id).messages[-1]["stopped"]
    run(runner, session, "thanks")  # still usable
    assert session.turn == 3 and not session.messages[-1].get("stopped")


def test_models_the_live_service_does_not_list_are_flagged(tmp_path: Path):
    served = ScriptedModel(models=["llama-3.3-70b", "qwen-3-32b"])
    settings = Settings.load({"data_dir": tmp_path, "engine": "live", "api_key": "k"}, environ={}, dotenv_path=None)
    catalog = asyncio.run(Services.create(settings, transport=served).check_catalog())
    assert "glm-5" in catalog.unlisted and "llama-3.3-70b" not in catalog.unlisted
    assert len(catalog.models) == len(load_catalog().models)
    assert [r.path for r in served.requests] == ["/v1/models"]


def test_a_second_turn_while_one_runs_is_refused_and_changes_nothing(tmp_path: Path):
    model = ScriptedModel(reply("Let me see. " * 10, **SLOW), reply("Thirty days."))
    runner = scripted_runner(tmp_path, model)
    session = Session()

    async def both():
        async def consume(text):
            return [e async for e in runner.run(session, text)]

        task = asyncio.create_task(consume("Where is my order #48291?"))
        while not session.busy:
            await asyncio.sleep(0.005)
        with pytest.raises(SupportbotError, match="still answering"):
            await consume("What is your return policy?")
        await task

    asyncio.run(both())
    assert [m["content"] for m in session.messages if m["role"] == "user"] == ["Where is my order #48291?"]
    assert session.turn == 1 and not session.busy and len(model.chat_bodies) == 1
    run(runner, session, "What is your return policy?")  # and afterwards it works
    assert session.turn == 2 and session.messages[-1]["content"] == "Thirty days."


def test_a_reloaded_conversation_forks_so_two_readers_never_overwrite_each_other(runner: TurnRunner):
    original = Session()
    run(runner, original, "Where is my order #48291?")
    cid = original.conversation_id
    a, b = runner.s.history.load(cid), runner.s.history.load(cid)
    run(runner, a, "What is your return policy?")
    run(runner, b, "I'd like a refund for order #48258")
    assert a.conversation_id != cid and b.conversation_id != cid and a.conversation_id != b.conversation_id
    assert a.forked_from == b.forked_from == cid
    stored = runner.s.history.load(cid)
    assert stored.turn == 1  # the shared original is untouched
    assert runner.s.history.load(a.conversation_id).messages[-2]["content"] == "What is your return policy?"
    assert runner.s.history.load(b.conversation_id).messages[-2]["content"] == "I'd like a refund for order #48258"


def test_stopping_after_a_tool_ran_keeps_the_round_and_updates_the_ticket(tmp_path: Path):
    escalate = tool_call("escalate_to_human", {"reason": "customer wants a human", "priority": "high"}, id="call_e")
    model = ScriptedModel(reply(escalate), reply("A colleague will contact you shortly. " * 5, **SLOW))
    runner = scripted_runner(tmp_path, model)
    session = Session()
    stop_after(
        runner,
        session,
        "This is ridiculous, I want a human NOW. Order #48291.",
        lambda ev: any(isinstance(e, TextDelta) for e in ev),  # the answer after the tool is streaming
    )
    assert [(m["role"], m.get("tool_call_id")) for m in session.history] == [
        ("user", None),
        ("assistant", None),
        ("tool", "call_e"),
        ("assistant", None),
    ]
    assert "stopped" in session.history[-1]["content"]
    escalation = session.tool_calls[0]["result"]["ticket_id"]
    assert session.ticket["escalation_ticket_id"] == escalation and session.ticket["status"] == "escalated"
    assert session.messages[-1]["stopped"]


def test_usage_and_retries_are_recorded_in_the_session_and_stored(tmp_path: Path):
    model = ScriptedModel(error(503), reply("Hello!", usage=(321, 12)))
    runner = scripted_runner(tmp_path, model, max_retries=1)
    session = Session()
    run(runner, session, "hello")
    assert [(u["purpose"], u["prompt_tokens"], u["completion_tokens"]) for u in session.usage] == [
        ("retry", 0, 0),
        ("answer", 321, 12),
    ]
    assert session.usage[1]["total_tokens"] == 333 and all(u["turn"] == 1 for u in session.usage)
    assert runner.s.history.load(session.conversation_id).usage == session.usage


def test_retention_purges_old_conversations_while_the_app_runs(tmp_path: Path):
    import time as clock

    from supportbot.storage.history import History

    settings = Settings.load(
        {"data_dir": tmp_path, "engine": "offline", "retention_days": 7}, environ={}, dotenv_path=None
    )
    runner = TurnRunner(Services.create(settings, OfflineEngine()))
    old = Session()
    History(tmp_path / "supportbot.sqlite3", clock=lambda: clock.time() - 30 * 86400).save(old)
    assert runner.s.history.load(old.conversation_id) is not None
    run(runner, Session(), "hello")
    assert runner.s.history.load(old.conversation_id) is None
