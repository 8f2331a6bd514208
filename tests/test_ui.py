"""The playground through gradio_client against a launched app on the offline engine."""

from __future__ import annotations

import gzip
import threading
from pathlib import Path

import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from supportbot.config import ASSETS_DIR, Settings
from supportbot.ui.app import launch_options

SAMPLES = ASSETS_DIR / "samples"


@pytest.fixture
def client(app_url: str) -> Client:
    return Client(app_url, verbose=False, ssl_verify=False)


def turn(client: Client, text: str, files: list[str] | None = None, **kwargs) -> dict:
    client.predict({"text": text, "files": [handle_file(f) for f in files or []]}, api_name="/chat", **kwargs)
    return client.predict(api_name="/session")


def test_a_text_turn_calls_a_tool_seen_in_session(client: Client):
    session = turn(client, "Where is my order #48291?")
    assert set(session) >= {"conversation_id", "messages", "tool_calls", "routes", "usage", "ticket"}
    call = next(c for c in session["tool_calls"] if c["name"] == "check_order_status")
    assert call["arguments"] == {"order_id": "48291"} and call["ok"] and call["duration_ms"] >= 0
    assert call["result"]["status"] == "delayed"
    assert session["routes"][0]["model"] == "llama-3.3-70b" and session["routes"][0]["reason"]
    answer = session["messages"][-1]
    assert answer["role"] == "assistant" and call["result"]["tracking_number"] in answer["content"]
    assert session["usage"] and all(u["prompt_tokens"] > 0 for u in session["usage"])
    assert session["ticket"]["order_ids"] == ["48291"] and session["ticket"]["category"] == "order_status"


def test_a_screenshot_goes_to_a_vision_model(client: Client):
    session = turn(client, "What does this error mean?", [str(SAMPLES / "checkout-error.png")])
    route = session["routes"][-1]
    # The default plan is Pro: the first Pro vision model the (offline) service lists.
    assert route["model"] == "llama-4-maverick" and route["category"] == "vision" and "reads images" in route["reason"]
    assert {"model": "gemma-3-27b", "reason": "not on your plan"} in route["skipped"]
    user = [m for m in session["messages"] if m["role"] == "user"][-1]
    image = user["attachments"][0]
    assert image["kind"] == "image" and (image["width"], image["height"]) == (1440, 900)
    assert "PNG" in session["messages"][-1]["content"] and "vision model" in session["messages"][-1]["content"]


def test_a_long_log_goes_to_a_long_context_model_and_is_analysed(client: Client):
    session = turn(client, "Our checkout keeps failing, here is the log", [str(SAMPLES / "checkout-service.log")])
    route = session["routes"][-1]
    # Kimi K2.6 is Premium: on the default Pro plan the long-context model is DeepSeek V4 Flash.
    assert route["category"] == "long_context" and route["model"] == "deepseek-v4-flash"
    assert {"model": "kimi-k2.6", "reason": "not on your plan"} in route["skipped"]
    answer = session["messages"][-1]["content"]
    # Only a correct reading of the sample says these (counted with grep): 3,096 lines, 173 ERROR lines,
    # 162 of them the payment gateway timing out, 11 declined cards.
    assert "3,096 lines" in answer and "ERROR 173" in answer
    assert "PaymentGatewayClient: call to" in answer and "162 of the 173 errors" in answer
    assert "card declined by issuer" in answer and "×11" in answer


def test_a_gzipped_log_is_read(client: Client, tmp_path: Path):
    path = tmp_path / "app.log.gz"
    with gzip.open(path, "wt") as fh:
        for i in range(200):
            fh.write(
                f"2026-11-27T10:00:{i % 60:02d}Z {'ERROR' if i % 10 == 0 else 'INFO'} worker-{i % 3} job {i} finished\n"
            )
    session = turn(client, "why do jobs fail?", [str(path)])
    user = [m for m in session["messages"] if m["role"] == "user"][-1]
    assert user["attachments"][0]["lines"] == 200
    assert session["routes"][-1]["category"] == "reasoning"


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("screenshot.png", b"this is not an image", "not an image"),
        ("dump.log", b"\x00\x01\x02binary\x00" * 100, "binary"),
        ("empty.png", b"", "empty"),
    ],
)
def test_bad_input_gets_a_clear_message_and_loses_nothing(
    client: Client, tmp_path: Path, name: str, content: bytes, expected: str
):
    before = turn(client, "Where is my order #48291?")
    bad = tmp_path / name
    bad.write_bytes(content)
    with pytest.raises(AppError) as info:
        client.predict({"text": "see this", "files": [handle_file(str(bad))]}, api_name="/chat")
    assert name in str(info.value) and expected in str(info.value).lower()
    after = client.predict(api_name="/session")
    assert after["messages"] == before["messages"] and after["turns"] == before["turns"]
    again = turn(client, "and order #48258?")  # still usable
    assert again["turns"] == before["turns"] + 1 and again["messages"][: len(before["messages"])] == before["messages"]


def test_an_empty_message_is_refused_politely(client: Client):
    with pytest.raises(AppError, match="Type a message"):
        client.predict({"text": "   ", "files": []}, api_name="/chat")


def test_two_clients_keep_separate_sessions(app_url: str):
    results: dict[str, dict] = {}

    def run(name: str, text: str) -> None:
        c = Client(app_url, verbose=False, ssl_verify=False)
        results[name] = turn(c, text)

    threads = [
        threading.Thread(target=run, args=("a", "Where is my order #48291?")),
        threading.Thread(target=run, args=("b", "What is your return policy?")),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    a, b = results["a"], results["b"]
    assert a["conversation_id"] != b["conversation_id"]
    assert [m["content"] for m in a["messages"] if m["role"] == "user"] == ["Where is my order #48291?"]
    assert [m["content"] for m in b["messages"] if m["role"] == "user"] == ["What is your return policy?"]
    assert any(c["name"] == "search_knowledge_base" for c in b["tool_calls"])
    assert not any(c["name"] == "search_knowledge_base" for c in a["tool_calls"])


def test_new_conversation_forgets_the_agents_memory(client: Client):
    first = turn(client, "Where is my order #48291?")
    client.predict(api_name="/new_conversation")
    fresh = client.predict(api_name="/session")
    assert fresh["messages"] == [] and fresh["conversation_id"] != first["conversation_id"]
    # The agent no longer knows the order: a refund request without an id asks for it.
    session = turn(client, "I want a refund")
    assert not any(c["name"] == "request_refund" for c in session["tool_calls"])


def test_load_restores_a_conversation_by_id(client: Client, app_url: str):
    original = turn(client, "Where is my order #48291?")
    other = Client(app_url, verbose=False, ssl_verify=False)
    loaded = other.predict(original["conversation_id"], api_name="/load")
    assert loaded["conversation_id"] == original["conversation_id"]
    assert loaded["messages"] == original["messages"] and loaded["tool_calls"] == original["tool_calls"]
    assert other.predict(api_name="/session")["ticket"] == original["ticket"]


def test_launch_options_for_spaces_and_local():
    s = Settings.load(environ={}, dotenv_path=None)
    assert launch_options(s, env={})["server_name"] == "127.0.0.1"
    assert launch_options(s, env={"SPACE_ID": "me/supportbot"})["server_name"] == "0.0.0.0"
    assert launch_options(s, env={"SYSTEM": "spaces", "GRADIO_SERVER_PORT": "9000"})["server_port"] == 9000
    opts = launch_options(s, env={"GRADIO_SERVER_NAME": "10.0.0.5"})
    assert opts["server_name"] == "10.0.0.5" and opts["run_history"] is False and opts["max_file_size"] == "50mb"


def test_routes_in_session_show_each_rule(client: Client):
    """Spanish -> Qwen; a pasted 300K-token log -> DeepSeek V4 Flash; all visible in /session."""
    turn(client, "Hola, ¿dónde está mi pedido #48291? Debía llegar ayer.")
    line = "2026-11-27T10:00:01.123Z INFO [worker-3] req-7f3a91c2 GET /api/orders/48291 200 in 35ms\n"
    pasted = line * (600_000 // len(line) + 1)  # ~300K tokens at 2 characters a token
    session = turn(client, "Here is our log:\n" + pasted)
    routes = [(r["model"], r["category"]) for r in session["routes"]]
    assert routes == [("qwen-3-32b", "multilingual"), ("deepseek-v4-flash", "long_context")]
    user = [m for m in session["messages"] if m["role"] == "user"][-1]
    assert user["attachments"][0]["kind"] == "log" and user["attachments"][0]["est_tokens"] > 262_144


def test_a_bad_port_names_its_variable():
    from supportbot.errors import ConfigError

    with pytest.raises(ConfigError, match="GRADIO_SERVER_PORT"):
        launch_options(Settings.load(environ={}, dotenv_path=None), env={"GRADIO_SERVER_PORT": "eighty"})


def test_session_json_does_not_expose_server_paths(client: Client):
    session = turn(client, "look", [str(SAMPLES / "checkout-error.png")])
    assert "local_file" not in str(session) and "/tmp/" not in str(session["messages"])


def test_chat_keeps_its_outputs_and_session_gains_ticket_changes(client: Client):
    chat, tools, routes, meter, box = client.predict(
        {"text": "Where is my order #48291?", "files": []}, api_name="/chat"
    )
    assert chat[0]["content"][0]["text"] == "Where is my order #48291?"
    assert "check_order_status" in tools and "llama-3.3-70b" in routes and "Context" in meter
    session = client.predict(api_name="/session")
    status = next(c for c in session["ticket_changes"][0]["changes"] if c["field"] == "status")
    assert session["ticket_changes"][0]["turn"] == 1 and status["after"] == session["ticket"]["status"]
    assert session["ticket"]["customer"] == {"id": "C1001", "email": "maya.thompson@example.com"}
