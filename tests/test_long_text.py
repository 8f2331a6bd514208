"""Typed text over SUPPORTBOT_MAX_TEXT_CHARS: a log becomes an attachment, anything else is refused.

Through the real turn (TurnRunner -> SDK -> offline engine) and through the launched app with
gradio_client: a 1 MB one-token message gets a clear refusal, the conversation is untouched, and
a long pasted log is answered as an attachment.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from supportbot.config import ENV_VARS, Settings
from supportbot.conversation import TurnRunner
from supportbot.engine import OfflineEngine
from supportbot.errors import ConfigError, SupportbotError
from supportbot.services import Services
from supportbot.session import Session

ONE_TOKEN = "Q" * 1_000_000


def _log_text(chars: int) -> str:
    lines, size, i = [], 0, 0
    while size < chars:
        level = "ERROR" if i % 50 == 0 else "INFO"
        line = f"2026-11-27T10:{i // 60 % 60:02d}:{i % 60:02d}Z {level} [api] request {i} handled in {i % 90} ms\n"
        lines.append(line)
        size += len(line)
        i += 1
    return "".join(lines)


def make_runner(data_dir: Path, **overrides) -> TurnRunner:
    settings = Settings.load({"data_dir": data_dir, "engine": "offline", **overrides}, environ={}, dotenv_path=None)
    return TurnRunner(Services.create(settings, OfflineEngine()))


def run(runner: TurnRunner, session: Session, text: str) -> list:
    async def go():
        return [e async for e in runner.run(session, text)]

    return asyncio.run(go())


def test_the_limit_is_a_setting_with_a_default_of_200_000():
    assert ENV_VARS["max_text_chars"] == "SUPPORTBOT_MAX_TEXT_CHARS"
    assert Settings.load(environ={}, dotenv_path=None).max_text_chars == 200_000
    settings = Settings.load(environ={"SUPPORTBOT_MAX_TEXT_CHARS": "5000"}, dotenv_path=None)
    assert settings.max_text_chars == 5000
    with pytest.raises(ConfigError, match="SUPPORTBOT_MAX_TEXT_CHARS"):
        Settings.load(environ={"SUPPORTBOT_MAX_TEXT_CHARS": "ten"}, dotenv_path=None)


def test_a_1_mb_one_token_message_is_refused_quickly_and_the_conversation_is_untouched(tmp_path: Path):
    runner = make_runner(tmp_path)
    session = Session()
    run(runner, session, "Where is my order #48291?")
    before = session.to_json()
    start = time.perf_counter()
    with pytest.raises(SupportbotError) as refused:
        run(runner, session, ONE_TOKEN)
    took = time.perf_counter() - start
    message = str(refused.value)
    assert "1,000,000 characters" in message and "200,000" in message and "SUPPORTBOT_MAX_TEXT_CHARS" in message
    assert ".log" in message  # says what to do instead
    assert took < 5, took  # refused on sight, not after minutes of regex work
    assert session.to_json() == before and not session.busy
    # The conversation goes on as before.
    run(runner, session, "Thanks!")
    assert session.messages[-1]["role"] == "assistant" and session.turn == 2


def test_text_under_the_limit_is_answered_and_a_long_log_becomes_an_attachment(tmp_path: Path):
    runner = make_runner(tmp_path, max_text_chars=10_000)
    session = Session()
    run(runner, session, "Where is my order #48291? " + "x" * 8_000)  # under the limit: an ordinary message
    assert "48291" in session.messages[-1]["content"]
    log = _log_text(300_000)
    run(runner, session, log)
    user = [m for m in session.messages if m["role"] == "user"][-1]
    assert user["content"] == "" and user["attachments"][0]["filename"] == "pasted.log"
    assert user["attachments"][0]["lines"] == log.count("\n")
    answer = session.messages[-1]["content"]
    assert "ERROR" in answer and "lines" in answer  # the engine read it as a log


def test_over_the_limit_prose_is_refused_but_a_log_is_not(tmp_path: Path):
    runner = make_runner(tmp_path, max_text_chars=5_000)
    with pytest.raises(SupportbotError, match="over the 5,000-character limit"):
        run(runner, Session(), "Please help me. " * 1_000)
    session = Session()
    run(runner, session, _log_text(20_000))
    assert session.messages[-1]["role"] == "assistant" and "ERROR" in session.messages[-1]["content"]


def test_the_app_refuses_a_1_mb_token_with_the_reason(app_url: str):
    client = Client(app_url, verbose=False, ssl_verify=False)
    with pytest.raises(AppError, match="over the 200,000-character limit"):
        client.predict({"text": ONE_TOKEN, "files": []}, api_name="/chat")
    # The session is untouched and still answers.
    assert client.predict(api_name="/session")["messages"] == []
    client.predict({"text": "Where is my order #48291?", "files": []}, api_name="/chat")
    assert "48291" in client.predict(api_name="/session")["messages"][-1]["content"]
