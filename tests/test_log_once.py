"""A log is sent once: later turns carry its analysis, unless the customer asks about it again.

Whole turns through TurnRunner -> SDK -> offline engine (in-process). What was sent is read off
the engine's own record of each request (``engine.requests``) and counted with the engine's own
token count, so the product's estimate is not what checks itself.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from supportbot import memory
from supportbot.config import Settings
from supportbot.conversation import TurnRunner
from supportbot.engine import OfflineEngine
from supportbot.services import Services
from supportbot.session import Session
from supportbot.ui import render
from supportbot.vocabulary import fence_log

MARKER = "MARKER-7f3a9 cache warmed for tenant 42"


def write_log(path: Path, chars: int) -> Path:
    """A service log of about ``chars`` characters (2 a token by the product's estimate), one marker line."""
    lines, size, i = [], 0, 0
    while size < chars:
        if i == 200:
            line = f"2026-11-27T09:00:00.000Z INFO [cache] {MARKER}\n"
        elif i % 53 == 0:
            line = f"2026-11-27T09:{i // 60 % 60:02d}:{i % 60:02d}.000Z ERROR [payments] upstream timed out after 30s\n"
        else:
            line = f"2026-11-27T09:{i // 60 % 60:02d}:{i % 60:02d}.000Z INFO [api] GET /orders/{40000 + i % 977} 200\n"
        lines.append(line)
        size += len(line)
        i += 1
    path.write_text("".join(lines))
    return path


@pytest.fixture
def engine() -> OfflineEngine:
    return OfflineEngine()


@pytest.fixture
def runner(tmp_path: Path, engine: OfflineEngine) -> TurnRunner:
    settings = Settings.load({"data_dir": tmp_path / "data", "engine": "offline"}, environ={}, dotenv_path=None)
    return TurnRunner(Services.create(settings, engine))


def run(runner: TurnRunner, session: Session, text: str, files: list[Path] | None = None) -> None:
    async def go():
        async for _ in runner.run(session, text, files):
            pass

    asyncio.run(go())


def sent_text(engine: OfflineEngine) -> str:
    """Every message content of the last request, as sent."""
    return "\n".join(str(m.get("content") or "") for m in engine.requests[-1]["messages"])


def meter_tokens(session: Session) -> int:
    shown = re.search(r"Context ~?([\d,]+) /", render.context_meter(session))
    assert shown is not None
    return int(shown.group(1).replace(",", ""))


def test_after_a_300k_token_log_a_thanks_turn_is_small_and_a_question_about_it_is_grounded(
    tmp_path: Path, runner: TurnRunner, engine: OfflineEngine
):
    log = write_log(tmp_path / "payments.log", 600_000)  # ~300K tokens
    session = Session()
    run(runner, session, "Payments keep failing since this morning, here is the log.", [log])
    first = engine.requests[-1]
    assert MARKER in sent_text(engine)  # the log went out, whole
    assert engine.prompt_tokens(first) > 250_000

    run(runner, session, "thanks")
    thanks = engine.requests[-1]
    assert MARKER not in sent_text(engine)  # not the log again...
    assert "upstream timed out" in sent_text(engine) and "Log summary" in sent_text(engine)  # ...its analysis
    assert engine.prompt_tokens(thanks) < 3_000, engine.prompt_tokens(thanks)
    assert session.routes[-1]["model"] == "llama-3.3-70b"  # no long-context model needed for a "thanks"
    # The meter shows what was sent: the service's count for this turn, not the log's size.
    assert meter_tokens(session) == max(
        u["prompt_tokens"] for u in session.usage if u["turn"] == 2 and u["purpose"] in ("answer", "tool_round")
    )
    assert meter_tokens(session) < 3_000

    run(runner, session, "What does the log say about timeouts?")
    asked = sent_text(engine)
    assert asked.count(MARKER) == 1  # sent again, once: the earlier copy still travels as its analysis
    answer = session.messages[-1]["content"]
    assert "timed out" in answer and "payments.log" in answer  # grounded in the log
    user = [m for m in session.messages if m["role"] == "user"][-1]
    assert user["attachments"][0]["filename"] == "payments.log" and user["attachments"][0]["resent"]
    assert any("sent again" in m["content"] for m in session.messages if m["role"] == "notice" and m["turn"] == 3)
    assert meter_tokens(session) > 250_000  # and the meter says so

    run(runner, session, "ok, bye")
    assert MARKER not in sent_text(engine) and engine.prompt_tokens(engine.requests[-1]) < 5_000


def test_attaching_the_log_again_sends_it_with_that_turn_only(
    tmp_path: Path, runner: TurnRunner, engine: OfflineEngine
):
    log = write_log(tmp_path / "app.log", 40_000)
    session = Session()
    run(runner, session, "Here is the log", [log])
    run(runner, session, "Here it is again, with more context", [log])
    assert sent_text(engine).count(MARKER) == 1  # this turn's copy; the first one as its analysis
    user = [m for m in session.messages if m["role"] == "user"][-1]
    assert not user["attachments"][0].get("resent")  # attached by the customer, not resent by us


def test_a_message_that_does_not_ask_about_the_log_never_resends_it(
    tmp_path: Path, runner: TurnRunner, engine: OfflineEngine
):
    log = write_log(tmp_path / "checkout-service.log", 40_000)
    session = Session()
    run(runner, session, "Checkout breaks", [log])
    for text in ("Where is my order #48291?", "I'd like a refund for order #48258", "thanks"):
        run(runner, session, text)
        assert MARKER not in sent_text(engine), text
    run(runner, session, "Anything else in checkout-service besides the timeouts?")  # names the file
    assert sent_text(engine).count(MARKER) == 1


def test_the_memory_keeps_the_log_and_the_request_carries_its_analysis():
    body = "2026-11-27T09:00:00Z ERROR [x] upstream timed out\n" * 30 + MARKER
    history = [
        {"role": "user", "content": "see attached\n\n" + fence_log(body, "x.log")},
        {"role": "assistant", "content": "Looking."},
    ]
    sent = memory.sent_history(history)
    assert MARKER in history[0]["content"] and MARKER not in sent[0]["content"]  # memory keeps it; requests don't
    assert sent[0]["content"].startswith("see attached") and 'log "x.log (analysis)"' in sent[0]["content"]
    assert sent[1] == history[1]
    assert memory.logs_asked_about(history, "thanks!") == {}
    assert memory.logs_asked_about(history, "and the logs?") == {"x.log": body}
