"""Compare mode (issue 11 item 5): one message to two models through ``/compare`` on a launched app.

Each side is its own conversation with its own sandbox of the demo shop; a side that fails never stops the
other; both sides draw on the visitor's budget. The offline engine fails any model whose id is
``fail-<kind>`` (``supportbot.engine.core.FAIL_MODEL_PREFIX``), so a test catalog adds ``fail-auth``: a 401,
which no fallback takes (a wrong key is wrong for every model).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import launch_app
from gradio_client import Client
from gradio_client.exceptions import AppError

from supportbot.config import ASSETS_DIR
from supportbot.tools.rounds import DENIED

ORDER = "Where is my order #48291? It was supposed to arrive yesterday."
REFUND = "I'd like a refund for order #48258, it never arrived."
CHOSEN = "qwen-3-32b"
FAILING = "fail-auth"


def catalog_with_failing_model(directory: Path) -> Path:
    """assets/models.json plus a model the offline engine always answers with a 401."""
    data = json.loads((ASSETS_DIR / "models.json").read_text(encoding="utf-8"))
    data["models"].append(
        {"id": FAILING, "name": "Always 401", "categories": ["triage"], "context_window": 32768}
        | {"capabilities": {"tools": True}, "source": "test: the offline engine fails fail-<kind> ids"}
    )
    path = directory / "models.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def client(url: str, address: str) -> Client:
    """A visitor at ``address`` (one trusted proxy: each test has a budget of its own)."""
    return Client(url, verbose=False, headers={"X-Forwarded-For": address})


def compare(c: Client, text: str, model_a: str = "auto", model_b: str = CHOSEN) -> dict:
    return c.predict(text, model_a, model_b, api_name="/compare")


def refund(side: dict) -> dict:
    return next(call for call in side["tool_calls"] if call["name"] == "request_refund")


@pytest.fixture(scope="module", params=[0, 1], ids=["in-process", "turn-worker"])
def app(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The playground with the failing model in its catalog, turns in process or in one worker process."""
    data = tmp_path_factory.mktemp("compare")
    demo, url = launch_app(
        data,
        catalog_path=catalog_with_failing_model(data),
        turn_workers=request.param,
        max_retries=0,
        trusted_proxies=1,
        visitor_requests_per_day=9,
    )
    yield url
    if demo.turn_pool is not None:
        demo.turn_pool.close()
    demo.close()


def test_two_models_answer_the_same_question_side_by_side_and_go_on_together(app: str) -> None:
    c = client(app, "203.0.113.10")
    out = compare(c, ORDER)
    a, b = out["a"], out["b"]
    assert (a["selected"], b["selected"], b["model"]) == ("auto", CHOSEN, CHOSEN)
    assert a["model"] and a["model"] != FAILING and a["error"] is None and b["error"] is None
    for side in (a, b):
        call = side["tool_calls"][0]
        assert (call["name"], call["arguments"]["order_id"], call["ok"]) == ("check_order_status", "48291", True)
        assert call["result"]["tracking_number"] in side["answer"]  # answered from its own tool call
        assert side["requests"] == 2 and side["turn"] == 1  # a tool round, then the answer
        assert side["tokens"]["prompt"] > 0 and side["tokens"]["completion"] > 0
        assert side["tokens"]["total"] == side["tokens"]["prompt"] + side["tokens"]["completion"]
        assert side["latency_ms"] > 0 and side["cost"]["plan"] == "pro" and side["cost"]["flat_usd"] > 0
    assert a["cost"]["flat_usd"] == b["cost"]["flat_usd"]  # flat: the same two requests each
    # Each side goes on with its own history; the models may change between turns, like the chat's.
    second = compare(c, "And #48258?", CHOSEN, "auto")
    assert second["a"]["turn"] == second["b"]["turn"] == 2
    assert (second["a"]["model"], second["b"]["selected"]) == (CHOSEN, "auto")
    assert all(s["tool_calls"][0]["arguments"]["order_id"] == "48258" for s in second.values())
    # Both sides were charged: 8 of this visitor's 9 requests are gone, so a comparison (2 at least) is refused.
    with pytest.raises(AppError) as info:
        compare(c, "And when will it arrive?")
    message = str(info.value)
    assert "You have 1 of 9 requests left today (SUPPORTBOT_VISITOR_REQUESTS_PER_DAY)" in message
    assert "needs at least 2" in message
    # The refusal changed nothing, and the main chat may still spend the last request (its tool round runs).
    c.predict({"text": ORDER, "files": []}, api_name="/chat")
    main = c.predict(api_name="/session")
    assert main["tool_calls"][0]["name"] == "check_order_status" and len(main["usage"]) == 1
    assert main["messages"][-1]["error_kind"] == "limit"  # its answer had no request left


def test_refunds_on_both_sides_are_approved_and_the_main_conversation_is_untouched(app: str) -> None:
    c = client(app, "203.0.113.12")
    out = compare(c, REFUND)
    for side in (out["a"], out["b"]):
        assert refund(side)["ok"] and refund(side)["result"]["outcome"] == "approved", side
        assert side["answer"]
    # The main conversation's sandbox never saw either refund: the same request there is approved too.
    c.predict({"text": REFUND, "files": []}, api_name="/chat")
    main = c.predict(api_name="/session")
    assert refund(main)["result"]["outcome"] == "approved"


def test_each_side_remembers_its_own_refund(app: str) -> None:
    c = client(app, "203.0.113.13")
    first = compare(c, REFUND, "auto", "auto")
    assert [refund(s)["result"]["outcome"] for s in first.values()] == ["approved", "approved"]
    # Asked again in the same comparison, each side's own sandbox has the refund already.
    again = compare(c, REFUND, "auto", "auto")
    for side in again.values():
        assert refund(side)["result"]["outcome"] == "denied"
        assert "already refunded" in refund(side)["result"]["explanation"]


def test_a_failing_side_shows_its_error_and_the_other_side_still_answers(app: str) -> None:
    c = client(app, "203.0.113.15")
    out = compare(c, ORDER, FAILING, "auto")
    a, b = out["a"], out["b"]
    assert a["model"] == FAILING and a["fallback_from"] is None
    assert a["error"] and "API key" in a["error"] and a["answer"] == "" and a["tool_calls"] == []
    assert a["requests"] == 1 and a["tokens"]["total"] == 0  # the refused request counts; it carried no tokens
    assert b["error"] is None and b["tool_calls"][0]["name"] == "check_order_status" and b["answer"]
    # Reversed, the same: the failure stays in its own column.
    out = compare(client(app, "203.0.113.16"), ORDER, "auto", FAILING)
    assert out["a"]["error"] is None and out["a"]["answer"] and "API key" in out["b"]["error"]


def test_a_bad_model_or_an_empty_message_is_refused_before_anything_runs(app: str) -> None:
    c = client(app, "203.0.113.17")
    with pytest.raises(AppError, match="no-such-model"):  # the dropdown's choices decide
        compare(c, ORDER, "no-such-model")
    with pytest.raises(AppError, match="Type a message"):
        compare(c, "   ")
    assert compare(c, ORDER)["a"]["turn"] == 1  # nothing was charged or recorded by the refusals


def test_a_call_that_needs_approval_is_denied_on_both_sides(tmp_path: Path) -> None:
    demo, url = launch_app(tmp_path, confirm_tools="request_refund")
    try:
        out = compare(Client(url, verbose=False), REFUND)
        for side in out.values():
            call = refund(side)
            assert not call["ok"] and call["error"] == DENIED and side["answer"] and side["error"] is None
    finally:
        demo.close()


def test_one_comparison_at_a_time_per_session(tmp_path: Path) -> None:
    demo, url = launch_app(tmp_path, stream_delay_s=0.05)
    try:
        c = Client(url, verbose=False)
        first = c.submit(ORDER, "auto", CHOSEN, api_name="/compare")
        time.sleep(0.5)  # the first is streaming (about 2 s a side)
        with pytest.raises(AppError, match="A comparison is still running"):
            compare(c, "What is your return policy?")
        done = first.result()
        assert done["a"]["answer"] and done["b"]["answer"] and done["a"]["turn"] == 1
        assert compare(c, "What is your return policy?")["a"]["turn"] == 2  # free again once it ended
    finally:
        demo.close()


def _file_shaped(value) -> bool:
    """Whether any dict in ``value`` looks like a file to Gradio (which would copy and serve its path)."""
    if isinstance(value, dict):
        return "path" in value or any(_file_shaped(v) for v in value.values())
    if isinstance(value, list):
        return any(_file_shaped(v) for v in value)
    return False


def test_tool_arguments_shaped_like_a_file_come_back_as_text_never_as_a_file(tmp_path: Path) -> None:
    # A model chooses tool arguments: a prompt-injected one could name a server file in FileData's shape.
    from supportbot.services import Services
    from supportbot.testing import ScriptedModel, reply, tool_call

    forged = {"order_id": {"path": str(ASSETS_DIR.parent / "README.md"), "meta": {"_type": "gradio.FileData"}}}
    model = ScriptedModel(
        reply(tool_call("check_order_status", forged)),
        reply(tool_call("check_order_status", forged)),
        reply("Done."),
        repeat_last=True,
    )
    demo, url = launch_app(
        tmp_path, lambda s: Services.create(s, transport=model), engine="live", api_key="test-key", max_retries=0
    )
    try:
        out = compare(Client(url, verbose=False), ORDER, "llama-3.3-70b", CHOSEN)
    finally:
        demo.close()
    calls = [c for side in (out["a"], out["b"]) for c in side["tool_calls"]]
    assert calls and not _file_shaped(out)
    assert any("README.md" in json.dumps(c["arguments"]) for c in calls)  # shown, as text
