"""A .gz log cut off mid-stream (a partial download) is analysed as far as it goes, and said so.

The file is really cut (``gzip.compress(...)[:n]``) and goes through the real paths: ``open_log``,
then a whole turn (TurnRunner -> SDK -> offline engine) and the launched app (gradio_client). A
truly corrupt gzip is still refused.
"""

from __future__ import annotations

import asyncio
import gzip
from pathlib import Path

import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from supportbot.attachments.logs import open_log
from supportbot.config import Settings
from supportbot.conversation import TurnRunner
from supportbot.engine import OfflineEngine
from supportbot.errors import LogRejected
from supportbot.services import Services
from supportbot.session import Session
from supportbot.vocabulary import cut_off_note, find_cut_off_notes


def app_log(lines: int) -> str:
    out = []
    for i in range(lines):
        level = "ERROR" if i % 40 == 39 else "INFO"
        message = "upstream timed out after 30s" if level == "ERROR" else f"handled request {i}"
        out.append(f"2026-11-27T10:{i // 60 % 60:02d}:{i % 60:02d}.000Z {level} [api] {message}\n")
    return "".join(out)


def cut_gz(tmp_path: Path, lines: int = 4000, keep: float = 0.5, name: str = "service.log.gz") -> Path:
    """A gzip of ``lines`` log lines, cut after ``keep`` of its compressed bytes."""
    data = gzip.compress(app_log(lines).encode())
    path = tmp_path / name
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def test_a_cut_gzip_is_read_as_far_as_it_goes(tmp_path: Path):
    full = app_log(4000)
    log = open_log(cut_gz(tmp_path))
    assert log.cut_off and log.filename == "service.log"
    text = log.read_text()
    assert 0 < log.line_count < 4000 and text.count("\n") == log.line_count  # whole lines only
    assert full.startswith(text)  # exactly what arrived, nothing invented or dropped before the cut


def test_a_cut_gzip_upload_as_bytes_is_read_too(tmp_path: Path):
    data = gzip.compress(app_log(2000).encode())
    log = open_log(data[: len(data) // 3], "upload.log.gz")
    assert log.cut_off and 0 < log.line_count < 2000


def test_a_complete_gzip_is_not_marked_cut_off(tmp_path: Path):
    path = tmp_path / "ok.log.gz"
    path.write_bytes(gzip.compress(app_log(100).encode()))
    log = open_log(path)
    assert not log.cut_off and log.line_count == 100


def test_a_corrupt_gzip_is_still_refused(tmp_path: Path):
    data = bytearray(gzip.compress(app_log(2000).encode()))
    data[100:160] = bytes(60)  # garbage in the middle of the deflate stream
    path = tmp_path / "bad.log.gz"
    path.write_bytes(bytes(data))
    with pytest.raises(LogRejected, match="corrupt"):
        open_log(path)
    header_only = tmp_path / "header.log.gz"
    header_only.write_bytes(gzip.compress(b"x\n" * 100)[:6])
    with pytest.raises(LogRejected, match="ends before any of the log"):
        open_log(header_only)


def test_the_note_is_read_back():
    note = cut_off_note('we"ird.log', 12_345)
    assert find_cut_off_notes("intro\n" + note + "\nmore") == {"we'ird.log": 12_345}
    assert find_cut_off_notes('The log "x" was cut off after ,,, lines') == {}


def make_runner(data_dir: Path) -> TurnRunner:
    settings = Settings.load({"data_dir": data_dir, "engine": "offline"}, environ={}, dotenv_path=None)
    return TurnRunner(Services.create(settings, OfflineEngine()))


def test_the_answer_says_the_file_was_cut_off_after_n_lines(tmp_path: Path):
    runner = make_runner(tmp_path / "data")
    path = cut_gz(tmp_path)
    lines = open_log(path).line_count
    session = Session()

    async def turn():
        return [e async for e in runner.run(session, "Our service log, what is wrong?", [path])]

    asyncio.run(turn())
    answer = session.messages[-1]["content"]
    assert f"cut off after {lines:,} lines" in answer  # the model was told, and says so
    assert "upstream timed out" in answer  # and still analysed what arrived
    attachment = session.messages[0]["attachments"][0]
    assert attachment["cut_off"] and attachment["lines"] == lines
    notices = [m["content"] for m in session.messages if m["role"] == "notice"]
    assert any(f"cut off after {lines:,} lines" in n for n in notices)  # the customer sees it at once
    sent = runner.s.clients.engine.requests[-1]["messages"][1]["content"]
    assert cut_off_note("service.log", lines) in sent  # outside the fence, as the product's own words


def test_the_app_answers_a_cut_gzip_and_refuses_a_corrupt_one(app_url: str, tmp_path: Path):
    client = Client(app_url, verbose=False, ssl_verify=False)
    path = cut_gz(tmp_path, keep=0.4)
    lines = open_log(path).line_count
    client.predict({"text": "What is wrong here?", "files": [handle_file(str(path))]}, api_name="/chat")
    session = client.predict(api_name="/session")
    assert f"cut off after {lines:,} lines" in session["messages"][-1]["content"]
    bad = bytearray(gzip.compress(app_log(2000).encode()))
    bad[100:160] = bytes(60)
    corrupt = tmp_path / "bad.log.gz"
    corrupt.write_bytes(bytes(bad))
    with pytest.raises(AppError, match="corrupt"):
        client.predict({"text": "And this one?", "files": [handle_file(str(corrupt))]}, api_name="/chat")
