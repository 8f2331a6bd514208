"""The answer stream read as JSON (supportbot.sse), through the real SDK and agent, against services that
misbehave: over loopback HTTP where timing matters (a stall, a server that keeps talking after [DONE]),
with the scripted model's byte-for-byte bodies where only the bytes do."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from supportbot.agent import Agent
from supportbot.client import ClientFactory
from supportbot.config import Settings
from supportbot.events import Done, ErrorEvent, TextDelta
from supportbot.routing.catalog import load_catalog
from supportbot.routing.fallback import FALLBACK_KINDS
from supportbot.sse import MAX_EVENT_BYTES
from supportbot.storage.store import Store
from supportbot.testing import Raw, ScriptedModel
from supportbot.tools import ToolContext

LLAMA = load_catalog().get("llama-3.3-70b")


def _chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    body = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m"}
    body["choices"] = [{"index": 0, "delta": delta, "finish_reason": finish}]
    return b"data: " + json.dumps(body, ensure_ascii=False).encode() + b"\n\n"


ANSWER = [_chunk({"role": "assistant", "content": "Hello"}), _chunk({}, "stop"), b"data: [DONE]\n\n"]


@pytest.fixture
def store(tmp_path, today) -> Store:
    with Store(tmp_path / "supportbot.db", today=today) as s:
        yield s


def _settings(base_url: str = "http://model.test/v1") -> Settings:
    return Settings.load(
        {"engine": "live", "api_key": "k", "base_url": base_url, "max_retries": 0, "request_timeout": 1.5},
        environ={},
        dotenv_path=None,
    )


def _turn(agent: Agent, store: Store, limit_s: float = 10.0) -> tuple[list, float]:
    async def go() -> list:
        return [
            e async for e in agent.run_turn([{"role": "user", "content": "hi"}], LLAMA, ToolContext(store.sandbox("t")))
        ]

    start = time.monotonic()
    events = asyncio.run(asyncio.wait_for(go(), limit_s))
    return events, time.monotonic() - start


def _scripted(store: Store, *parts: bytes) -> list:
    body = Raw(200, {"content-type": "text/event-stream"}, b"".join(parts))
    s = _settings()
    return _turn(Agent(s, ClientFactory(s, transport=ScriptedModel(body))), store)[0]


def _text(events: list) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


def _errors(events: list) -> list[ErrorEvent]:
    return [e for e in events if isinstance(e, ErrorEvent)]


@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\x85", "\x1c"])
def test_a_unicode_line_separator_inside_the_json_is_text_not_a_line_end(store: Store, separator: str):
    said = f"line one{separator}line two"
    events = _scripted(store, _chunk({"role": "assistant", "content": said}), _chunk({}, "stop"), b"data: [DONE]\n\n")
    assert _text(events) == said and events[-1].ok


@pytest.mark.parametrize("end", [b"\r\n", b"\r"])
def test_cr_and_crlf_line_ends_are_line_ends(store: Store, end: bytes):
    parts = [p.replace(b"\n", end) for p in ANSWER]
    events = _scripted(store, *parts)
    assert _text(events) == "Hello" and events[-1].ok


@pytest.mark.parametrize(
    "bad",
    [
        b"data: {not json\n\n",
        b"data: " + b"[" * 100_000 + b"\n\n",  # nested past the recursion limit
        b"data: " + b"x" * (MAX_EVENT_BYTES + 10) + b"\n\n",  # one endless line
    ],
    ids=["not-json", "deep", "huge-line"],
)
def test_a_broken_stream_is_a_protocol_error_that_never_counts_against_the_model(store: Store, bad: bytes):
    events = _scripted(store, ANSWER[0], bad, _chunk({"content": " more"}))
    errors = _errors(events)
    assert [e.kind for e in errors] == ["protocol"] and "broken answer stream" in errors[0].message
    assert "protocol" not in FALLBACK_KINDS  # no fallback request is paid for, no model cooled for everyone
    assert isinstance(events[-1], Done) and not events[-1].ok and events[-1].messages == []


class _Server:
    """A loopback HTTP/1.1 server that answers every request with ``script(writer)``."""

    def __init__(self, script: Callable[[asyncio.StreamWriter], Any]) -> None:
        self.script = script
        self.port: int | None = None
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self._run, daemon=True).start()
        while self.port is None:
            time.sleep(0.01)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self.loop.run_forever()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
        )
        await reader.readexactly(length)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
        try:
            await self.script(writer)
        except (ConnectionError, asyncio.CancelledError):
            pass  # the client went away: what these tests want

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)

    @staticmethod
    async def send(writer: asyncio.StreamWriter, *parts: bytes) -> None:
        for part in parts:
            writer.write(b"%x\r\n%s\r\n" % (len(part), part))
        await writer.drain()


def _live(store: Store, script) -> tuple[list, float]:
    server = _Server(script)
    try:
        s = _settings(f"http://127.0.0.1:{server.port}/v1")
        return _turn(Agent(s, ClientFactory(s)), store)
    finally:
        server.close()


def test_a_server_that_stalls_after_done_does_not_hold_the_answer(store: Store):
    async def script(writer):
        await _Server.send(writer, *ANSWER)
        await asyncio.sleep(30)

    events, took = _live(store, script)
    assert _text(events) == "Hello" and events[-1].ok and not _errors(events)
    assert took < 1.0  # the read timeout is 1.5 s: the answer did not wait for it


def test_a_server_that_keeps_talking_after_done_cannot_hold_the_turn(store: Store):
    async def script(writer):
        await _Server.send(writer, *ANSWER)
        for _ in range(200):  # a keep-alive comment every 0.05 s, for 10 s: never a read timeout
            await _Server.send(writer, b": ping\n\n")
            await asyncio.sleep(0.05)

    events, took = _live(store, script)
    assert _text(events) == "Hello" and events[-1].ok and took < 1.0


def test_a_stall_mid_answer_is_a_timeout_and_keeps_what_arrived(store: Store):
    async def script(writer):
        await _Server.send(writer, ANSWER[0])
        await asyncio.sleep(30)

    events, took = _live(store, script)
    errors = _errors(events)
    assert [e.kind for e in errors] == ["timeout"] and _text(events) == "Hello"
    assert 1.4 < took < 5.0  # the 1.5 s read timeout, once (no retries set)


def test_a_connection_dropped_mid_answer_says_so(store: Store):
    async def script(writer):
        await _Server.send(writer, ANSWER[0])
        writer.transport.abort()

    events, _ = _live(store, script)
    assert [e.kind for e in _errors(events)] == ["connection"] and _text(events) == "Hello"
