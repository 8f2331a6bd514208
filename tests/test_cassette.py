"""Record and replay: SUPPORTBOT_RECORD against the engine's loopback server (a subprocess), then
SUPPORTBOT_ENGINE=replay with that server gone, through the real SDK, agent and tools."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from supportbot.cassette import Cassette, request_key
from supportbot.config import ASSETS_DIR, Settings
from supportbot.conversation import TurnRunner
from supportbot.engine import OfflineEngine
from supportbot.errors import ConfigError
from supportbot.events import ErrorEvent, TextDelta
from supportbot.qa import scenario as sc
from supportbot.qa.runner import run_scenario
from supportbot.services import Services
from supportbot.session import Session

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ASSETS_DIR / "cassettes" / "order-escalation.jsonl"
DEMO = ASSETS_DIR / "scenarios" / "capability-escalation.toml"
KEY = "sk-qa-SECRET-0123456789"
TURNS = [
    "Where is my order #48291? It was supposed to arrive yesterday and I am getting worried.",
    "This is ridiculous!!! I want to talk to a human NOW.",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return True
    return False


@pytest.fixture
def engine_server():
    """``python -m supportbot.engine --port N`` in its own process; yields (process, port)."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "supportbot.engine", "--port", str(port)],
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(300):
        if not refused(port):
            break
        assert proc.poll() is None, "the engine server exited"
        asyncio.run(asyncio.sleep(0.1))
    yield proc, port
    proc.terminate()
    proc.wait(timeout=10)


def runner_for(data_dir: Path, **overrides) -> TurnRunner:
    settings = Settings.load({"data_dir": data_dir, "max_retries": 0, **overrides}, environ={}, dotenv_path=None)
    return TurnRunner(Services.create(settings))


def play(runner: TurnRunner, turns: list[str]) -> tuple[Session, list]:
    session, events = Session(), []

    async def go():
        for text in turns:
            events.extend([e async for e in runner.run(session, text)])

    asyncio.run(go())
    return session, events


def transcript(session: Session) -> tuple[list, list]:
    answers = [(m["role"], m["content"], m.get("model")) for m in session.messages]
    calls = [(c["turn"], c["name"], c["arguments"], c["ok"]) for c in session.tool_calls]
    return answers, calls


def test_record_against_the_engine_server_then_replay_with_it_stopped(tmp_path: Path, engine_server):
    proc, port = engine_server
    cassette = tmp_path / "demo.jsonl"
    base_url = f"http://127.0.0.1:{port}/v1"
    live = runner_for(tmp_path / "rec", engine="live", base_url=base_url, api_key=KEY, record_path=cassette)
    recorded, _ = play(live, TURNS)
    assert recorded.ticket["status"] == "escalated"
    proc.terminate()
    proc.wait(timeout=10)
    assert refused(port)  # the network is gone

    replay = runner_for(tmp_path / "play", engine="replay", cassette_path=cassette, base_url=base_url, api_key=KEY)
    replayed, events = play(replay, TURNS)
    assert not [e for e in events if isinstance(e, ErrorEvent)]
    assert transcript(replayed) == transcript(recorded)
    assert "ESC-" in replayed.messages[-1]["content"]  # the recorded answer, word for word
    assert replayed.ticket["status"] == "escalated"

    text = cassette.read_text()
    lines = [json.loads(line) for line in text.splitlines()]
    assert len(lines) == 4 and {e["request"]["endpoint"] for e in lines} == {"/chat/completions"}
    assert all(e["response"]["status"] == 200 and e["response"]["events"][-1] == "data: [DONE]" for e in lines)
    assert KEY not in text and "authorization" not in text.lower() and "bearer" not in text.lower()


def test_the_key_is_masked_even_where_a_message_repeats_it(tmp_path: Path):
    cassette = tmp_path / "c.jsonl"
    runner = runner_for(tmp_path, engine="offline", api_key=KEY, record_path=cassette)
    play(runner, [f"my key is {KEY}, where is order #48291?"])
    text = cassette.read_text()
    assert KEY not in text and "my key is ***" in text


def test_a_request_missing_from_the_cassette_gets_a_clear_error_not_an_answer(tmp_path: Path):
    runner = runner_for(tmp_path, engine="replay", cassette_path=SHIPPED)
    session, events = play(runner, ["What is your return policy for opened items?"])
    errors = [e for e in events if isinstance(e, ErrorEvent)]
    assert len(errors) == 1 and errors[0].status == 400
    assert "No recording in order-escalation.jsonl matches this request" in errors[0].message
    assert "'What is your return policy for opened items?'" in errors[0].message
    assert not [e for e in events if isinstance(e, TextDelta)] and session.tool_calls == []
    assert session.messages[-1]["content"] == "" and session.messages[-1]["error"] == errors[0].message
    assert session.history == []  # the failed turn left nothing in the model's memory

    # The conversation stays usable: the recorded demo still plays after the miss.
    async def more():
        return [e async for e in runner.run(session, TURNS[0])]

    assert not [e for e in asyncio.run(more()) if isinstance(e, ErrorEvent)]
    assert "1ZJ170RG5248679763" in session.messages[-1]["content"]


def test_the_shipped_cassette_replays_the_demo_scenario():
    overrides = {"engine": "replay", "cassette_path": SHIPPED}
    result = asyncio.run(run_scenario(sc.load(DEMO), overrides=overrides, environ={}, dotenv_path=None))
    failed = [c for c in result.checks if c.status != "pass"]
    assert not failed, f"re-record with: python assets/cassettes/make_cassette.py ({failed})"


def test_the_re_record_script_makes_a_cassette_that_replays(tmp_path: Path):
    out = tmp_path / "fresh.jsonl"
    proc = subprocess.run(
        [sys.executable, str(ASSETS_DIR / "cassettes" / "make_cassette.py"), "--out", str(out)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert len(out.read_text().splitlines()) == 4
    overrides = {"engine": "replay", "cassette_path": out}
    result = asyncio.run(run_scenario(sc.load(DEMO), overrides=overrides, environ={}, dotenv_path=None))
    assert result.passed, result.checks


def test_recordings_of_one_request_play_in_order_and_the_last_repeats(tmp_path: Path):
    cassette = tmp_path / "retry.jsonl"
    engine = OfflineEngine()
    engine.inject("server", times=1)  # the first attempt gets a 500; the SDK's retry gets the answer
    settings = Settings.load(
        {"data_dir": tmp_path / "rec", "engine": "offline", "record_path": cassette, "max_retries": 1},
        environ={},
        dotenv_path=None,
    )
    recorded, _ = play(TurnRunner(Services.create(settings, engine)), TURNS[:1])
    statuses = [json.loads(line)["response"]["status"] for line in cassette.read_text().splitlines()]
    assert statuses == [500, 200, 200]  # answer (failed, retried), answer, tool round

    replay = runner_for(tmp_path / "play", engine="replay", cassette_path=cassette, max_retries=1)
    first, _ = play(replay, TURNS[:1])
    again, _ = play(replay, TURNS[:1])
    assert [u["purpose"] for u in first.usage] == ["retry", "answer", "tool_round"]  # as recorded
    assert [u["purpose"] for u in again.usage] == ["answer", "tool_round"]  # the last recording repeats
    assert transcript(first) == transcript(again) == transcript(recorded)


def body(messages: list, model: str = "llama-3.3-70b") -> dict:
    return {"model": model, "messages": messages, "max_tokens": 1024, "stream": True}


def test_requests_match_by_model_and_messages_without_ids_or_tool_results():
    def conversation(call_id: str, args: str, result: str, text: str = "Where is #48291?") -> list:
        return [
            {"role": "user", "content": text},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": call_id, "type": "function", "function": {"name": "check_order_status", "arguments": args}}
                ],
            },
            {"role": "tool", "tool_call_id": call_id, "content": result},
        ]

    key = request_key(
        "POST", "/chat/completions", body(conversation("call_a", '{"order_id": "48291"}', '{"eta": "1"}'))
    )
    same = body(conversation("call_zz9", '{"order_id":"48291"}', '{"eta": "2", "id": "ESC-1"}')) | {"max_tokens": 9}
    assert request_key("POST", "/chat/completions", same) == key
    for other in (
        body(conversation("call_a", '{"order_id": "48258"}', "{}")),  # other arguments
        body(conversation("call_a", '{"order_id": "48291"}', "{}", "Where is 48291?")),  # other text
        body(conversation("call_a", '{"order_id": "48291"}', "{}"), model="qwen-3-32b"),  # other model
    ):
        assert request_key("POST", "/chat/completions", other) != key
    assert request_key("GET", "/models", None) != request_key("GET", "/chat/completions", None)


def test_replay_settings_and_bad_cassettes_are_refused_naming_the_variable(tmp_path: Path):
    with pytest.raises(ConfigError, match="SUPPORTBOT_CASSETTE: SUPPORTBOT_ENGINE=replay needs a cassette"):
        Settings.load({"engine": "replay"}, environ={}, dotenv_path=None).check()
    with pytest.raises(ConfigError, match="SUPPORTBOT_CASSETTE: no such file"):
        Settings.load(
            {"engine": "replay", "cassette_path": tmp_path / "nope.jsonl"}, environ={}, dotenv_path=None
        ).check()
    bad = tmp_path / "bad.jsonl"
    bad.write_text(SHIPPED.read_text().splitlines()[0] + "\n{not json\n")
    with pytest.raises(ConfigError, match=r"SUPPORTBOT_CASSETTE: .*bad.jsonl line 2: not a recorded exchange"):
        Cassette.load(bad)
    env = {"SUPPORTBOT_ENGINE": "replay", "SUPPORTBOT_CASSETTE": str(SHIPPED), "SUPPORTBOT_RECORD": "x.jsonl"}
    settings = Settings.load(environ=env, dotenv_path=None)
    assert settings.cassette_path == SHIPPED and settings.record_path == Path("x.jsonl") and not settings.live


def test_a_stopped_turn_records_what_arrived(tmp_path: Path):
    cassette = tmp_path / "stopped.jsonl"
    settings = Settings.load(
        {"data_dir": tmp_path, "engine": "offline", "record_path": cassette}, environ={}, dotenv_path=None
    )
    runner = TurnRunner(Services.create(settings, OfflineEngine(stream_delay_s=0.05)))
    session = Session()

    async def stop_after_first_words():
        async def consume():
            async for event in runner.run(session, "What is your return policy for opened items?"):
                if isinstance(event, TextDelta):
                    started.set()

        started = asyncio.Event()
        task = asyncio.create_task(consume())
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        for _ in range(200):  # the stopped stream is written off the event loop
            if cassette.is_file() and "StreamClosed" in cassette.read_text():
                return
            await asyncio.sleep(0.01)

    asyncio.run(stop_after_first_words())
    last = json.loads(cassette.read_text().splitlines()[-1])
    assert last["error"]["type"] == "StreamClosed" and last["response"]["status"] == 200
    assert 0 < len(last["response"]["events"]) and "data: [DONE]" not in last["response"]["events"]
    assert session.messages[-1]["stopped"]
