"""Whole turns through the orchestration layer (router -> agent -> SDK -> offline engine),
in-process: attachments, routing, log reduction, compaction, tickets, persistence."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from supportbot.config import Settings
from supportbot.conversation import TurnRunner
from supportbot.engine import OfflineEngine
from supportbot.errors import SupportbotError
from supportbot.events import Done, ErrorEvent, Notice, RouteChosen, TicketUpdated, UsageReported
from supportbot.memory import compact
from supportbot.services import Services
from supportbot.session import Session


@pytest.fixture
def engine() -> OfflineEngine:
    return OfflineEngine()


def make_runner(data_dir: Path, engine: OfflineEngine) -> TurnRunner:
    settings = Settings.load(
        {"data_dir": data_dir, "engine": "offline", "max_retries": 0}, environ={}, dotenv_path=None
    )
    return TurnRunner(Services.create(settings, engine))


@pytest.fixture
def runner(tmp_path: Path, engine: OfflineEngine) -> TurnRunner:
    return make_runner(tmp_path, engine)


@pytest.fixture
def slow_runner(tmp_path: Path) -> TurnRunner:
    """A runner whose engine streams slowly enough to stop, or overlap, a turn midway."""
    return make_runner(tmp_path, OfflineEngine(stream_delay_s=0.05))


def run(runner: TurnRunner, session: Session, text: str, files: list[Path] | None = None, **kwargs) -> list:
    async def go():
        return [e async for e in runner.run(session, text, files, **kwargs)]

    return asyncio.run(go())


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


def test_an_image_never_reaches_a_text_model_in_later_turns(runner: TurnRunner, engine: OfflineEngine):
    session = Session()
    run(runner, session, "what is this?", [Path("assets/samples/checkout-error.png")])
    assert session.routes[0]["model"] == "kimi-vl-a3b"
    first = engine.requests[0]["messages"][-1]["content"]
    assert any(part["type"] == "image_url" and part["image_url"]["url"].startswith("data:image/") for part in first)
    run(runner, session, "thanks, and where is order #48291?")
    assert session.routes[1]["model"] == "llama-3.3-70b"
    later = [m for r in engine.requests[1:] for m in r["messages"]]
    assert not any(isinstance(m.get("content"), list) for m in later)


def test_a_failed_turn_keeps_the_conversation_usable(runner: TurnRunner, engine: OfflineEngine):
    session = Session()
    run(runner, session, "Where is my order #48291?")
    history = list(session.history)
    engine.inject("unavailable", times=1)
    events = run(runner, session, "and my refund?")
    assert any(isinstance(e, ErrorEvent) and e.kind == "server" for e in events)
    assert session.history == history  # nothing half-done reached the model's memory
    assert session.messages[-1]["error"] and session.messages[-1]["role"] == "assistant"
    run(runner, session, "What is your return policy?")
    assert session.messages[-1].get("error") is None and session.turn == 3


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
    from supportbot.routing.catalog import load_catalog

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


def test_stopping_a_turn_keeps_what_arrived_and_the_history_consistent(slow_runner: TurnRunner):
    runner = slow_runner
    session = Session()
    run(runner, session, "Where is my order #48291?")
    history = list(session.history)

    async def stop_midway():
        async def consume():
            async for _ in runner.run(session, "What is your return policy?"):
                pass

        task = asyncio.create_task(consume())
        while not any(m.get("turn") == 2 for m in session.messages if m["role"] == "user"):
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.15)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(stop_midway())
    assert session.history == history
    last = session.messages[-1]
    assert last["role"] == "assistant" and last["stopped"] and last["turn"] == 2
    assert runner.s.history.load(session.conversation_id).messages[-1]["stopped"]
    run(runner, session, "thanks")  # still usable
    assert session.turn == 3 and not session.messages[-1].get("stopped")


def test_models_the_live_service_does_not_list_are_flagged(tmp_path: Path):
    from supportbot.engine import start_server

    served = OfflineEngine(model_ids=["llama-3.3-70b", "qwen-3-32b"])
    with start_server(served) as server:
        settings = Settings.load(
            {"data_dir": tmp_path, "engine": "live", "api_key": "k", "base_url": server.base_url},
            environ={},
            dotenv_path=None,
        )
        services = Services.create(settings)
        catalog = asyncio.run(services.check_catalog())
    assert "glm-5" in catalog.unlisted and "llama-3.3-70b" not in catalog.unlisted
    assert len(catalog.models) == 10


def test_a_second_turn_while_one_runs_is_refused_and_changes_nothing(slow_runner: TurnRunner):
    runner = slow_runner
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
    assert session.turn == 1 and not session.busy
    run(runner, session, "What is your return policy?")  # and afterwards it works
    assert session.turn == 2


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


def test_stopping_after_a_tool_ran_keeps_the_round_and_updates_the_ticket(slow_runner: TurnRunner):
    runner = slow_runner
    session = Session()

    async def stop_after_the_tools():
        async def consume():
            async for _ in runner.run(session, "This is ridiculous, I want a human NOW. Order #48291."):
                pass

        task = asyncio.create_task(consume())
        while not any(c["name"] == "escalate_to_human" for c in session.tool_calls):
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)  # the answer is streaming now
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(stop_after_the_tools())
    roles = [m["role"] for m in session.history]
    assert roles[0] == "user" and "tool" in roles and roles[-1] == "assistant"
    assert "stopped" in session.history[-1]["content"]
    assert session.ticket["escalation_ticket_id"] and session.ticket["status"] == "escalated"
    assert session.messages[-1]["stopped"]


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
