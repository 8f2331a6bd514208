"""The agent loop through the real openai SDK.

End to end against the offline engine (in process and over loopback HTTP); the loop itself
(step limit, tool-call accumulation, errors, retries, usage) against the scripted model of
``supportbot.testing``, which answers exactly what each test says.
"""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import httpx
import pytest

from supportbot.agent import Agent
from supportbot.client import ClientFactory
from supportbot.config import Settings
from supportbot.engine import OfflineEngine, start_server
from supportbot.engine.tokens import count_messages, count_tools
from supportbot.events import (
    Done,
    ErrorEvent,
    Notice,
    RoundCompleted,
    TextDelta,
    ToolCallFinished,
    ToolCallStarted,
    UsageReported,
)
from supportbot.routing.catalog import load_catalog
from supportbot.storage.store import Store
from supportbot.testing import Raw, ScriptedModel, empty_stream, error, reply, timeout, tool_call
from supportbot.tools import ToolContext

CATALOG = load_catalog()
LLAMA = CATALOG.get("llama-3.3-70b")
ARTICLE = "Where is my order #48291? It was supposed to arrive yesterday and I am getting worried."
CHECK_48291 = tool_call("check_order_status", {"order_id": "48291"})


def settings(**overrides: Any) -> Settings:
    return Settings.load({"max_retries": 0, "request_timeout": 5, **overrides}, environ={}, dotenv_path=None)


def scripted(s: Settings, model: ScriptedModel) -> Agent:
    return Agent(s, ClientFactory(s, transport=model))


def run(agent: Agent, text: str, store: Store, model=LLAMA) -> list:
    async def go():
        return [
            e async for e in agent.run_turn([{"role": "user", "content": text}], model, ToolContext(store.sandbox("t")))
        ]

    return asyncio.run(go())


@pytest.fixture
def store(tmp_path, today) -> Store:
    """The agent's tests are about the loop, not storage (tested on both backends elsewhere): SQLite only."""
    with Store(tmp_path / "supportbot.db", today=today) as s:
        yield s


@pytest.fixture(scope="module")
def server():
    engine = OfflineEngine()
    with start_server(engine) as running:
        yield engine, running


def by_type(events: list, kind: type) -> list:
    return [e for e in events if isinstance(e, kind)]


def purposes(events: list) -> list[str]:
    return [e.record.purpose for e in by_type(events, UsageReported)]


# --- end to end on the offline engine ---------------------------------------------------------


def test_the_articles_question_streams_an_answer_built_from_a_real_tool_call(store: Store):
    engine = OfflineEngine()
    events = run(Agent(settings(), ClientFactory(settings(), engine)), ARTICLE, store)
    started = by_type(events, ToolCallStarted)
    assert started[0].name == "check_order_status" and json.loads(started[0].arguments) == {"order_id": "48291"}
    finished = [e for e in by_type(events, ToolCallFinished) if e.name == "check_order_status"][0]
    assert finished.ok and finished.result["status"] == "delayed"
    deltas = by_type(events, TextDelta)
    assert len(deltas) > 3  # it really streamed
    done = events[-1]
    assert isinstance(done, Done) and done.ok
    assert finished.result["tracking_number"] in done.text  # the answer uses the tool's data
    assert done.messages[0]["tool_calls"][0]["function"]["name"] == "check_order_status"
    assert done.messages[-1]["role"] == "assistant"
    # Every request asked for streamed usage and always sent max_tokens.
    assert all(
        r["stream"] and r["stream_options"] == {"include_usage": True} and r["max_tokens"] == 1024
        for r in engine.requests
    )
    usage = by_type(events, UsageReported)
    assert len(usage) == 2 and not any(u.record.estimated for u in usage)
    assert [u.record.purpose for u in usage] == ["answer", "tool_round"]


def test_over_loopback_http_with_two_orders_in_one_response(server, store: Store):
    engine, running = server
    s = settings(base_url=running.base_url, api_key="loopback", engine="live")
    events = run(Agent(s, ClientFactory(s)), "Please check orders #48291 and #48258 for me", store)
    names = [e.name for e in by_type(events, ToolCallFinished)]
    assert names.count("check_order_status") == 2
    first_round = events[-1].messages[0]["tool_calls"]
    assert {
        json.loads(c["function"]["arguments"])["order_id"]
        for c in first_round
        if c["function"]["name"] == "check_order_status"
    } == {"48291", "48258"}
    assert "48258" in events[-1].text and "48291" in events[-1].text


def test_a_dropped_stream_over_loopback_keeps_what_arrived_and_says_it_was_cut(server, store: Store):
    engine, running = server
    engine.inject("disconnect")
    s = settings(base_url=running.base_url, api_key="loopback", engine="live")
    events = run(Agent(s, ClientFactory(s)), "hello there", store)
    err = by_type(events, ErrorEvent)[0]
    assert err.kind in ("protocol", "connection") and ("dropped mid-answer" in err.message or "cut off" in err.message)
    assert by_type(events, TextDelta)  # what arrived was streamed before the drop
    assert not events[-1].ok


def test_a_refused_connection(store: Store):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again before use: nothing listens there
    s = settings(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", engine="live")
    events = run(Agent(s, ClientFactory(s)), "hello", store)
    err = by_type(events, ErrorEvent)[0]
    assert err.kind == "connection" and f"127.0.0.1:{port}" in err.message


def test_one_client_per_event_loop():
    factory = ClientFactory(settings(), OfflineEngine())

    async def grab():
        return factory.get(), factory.get()

    a1, a2 = asyncio.run(grab())
    b1, _ = asyncio.run(grab())
    assert a1 is a2 and a1 is not b1


def test_the_sync_and_async_sdk_both_work_in_process():
    import openai

    engine = OfflineEngine()
    client = openai.OpenAI(
        base_url="http://offline.engine/v1", api_key="offline", http_client=httpx.Client(transport=engine.transport())
    )
    reply_ = client.chat.completions.create(
        model="llama-3.3-70b", messages=[{"role": "user", "content": "hello"}], max_tokens=200
    )
    assert reply_.choices[0].message.content and reply_.usage.total_tokens > 0


# --- the loop, against a scripted model ---------------------------------------------------------


def test_tool_calls_streamed_in_fragments_are_put_back_together_in_order(store: Store):
    model = ScriptedModel(
        reply(
            "Let me look both up. ",
            tool_call("check_order_status", {"order_id": "48291"}, id="call_a"),
            tool_call("check_order_status", {"order_id": "48258"}, id="call_b"),
            pieces=7,
        ),
        reply("Both are found."),
    )
    events = run(scripted(settings(), model), "Check #48291 and #48258", store)
    started = by_type(events, ToolCallStarted)
    assert [(e.call_id, json.loads(e.arguments)) for e in started] == [
        ("call_a", {"order_id": "48291"}),
        ("call_b", {"order_id": "48258"}),
    ]
    finished = by_type(events, ToolCallFinished)
    assert [(f.ok, f.result["order_id"]) for f in finished] == [(True, "48291"), (True, "48258")]
    sent = model.chat_bodies[1]["messages"]  # what the model got back: its own calls, then each result
    assert sent[-3] == {
        "role": "assistant",
        "content": "Let me look both up. ",
        "tool_calls": [
            {
                "id": "call_a",
                "type": "function",
                "function": {"name": "check_order_status", "arguments": '{"order_id": "48291"}'},
            },
            {
                "id": "call_b",
                "type": "function",
                "function": {"name": "check_order_status", "arguments": '{"order_id": "48258"}'},
            },
        ],
    }
    assert [(m["role"], m["tool_call_id"]) for m in sent[-2:]] == [("tool", "call_a"), ("tool", "call_b")]
    assert json.loads(sent[-1]["content"])["order_id"] == "48258"
    assert [r.messages for r in by_type(events, RoundCompleted)] == [sent[-3:]]
    done = events[-1]
    assert done.ok and done.text == "Let me look both up. Both are found."
    assert [m["role"] for m in done.messages] == ["assistant", "tool", "tool", "assistant"]


def test_the_step_limit_ends_with_a_clear_message_not_silence(store: Store):
    model = ScriptedModel(reply(CHECK_48291), repeat_last=True)
    s = settings(max_tool_steps=2)
    events = run(scripted(s, model), ARTICLE, store)
    assert len(by_type(events, ToolCallFinished)) == 2
    err = by_type(events, ErrorEvent)[0]
    assert err.kind == "step_limit" and "2 tool rounds" in err.message and "SUPPORTBOT_MAX_TOOL_STEPS" in err.message
    assert len(model.chat_bodies) == 3 and not events[-1].ok and events[-1].finish_reason == "step_limit"
    assert purposes(events) == ["answer", "tool_round", "tool_round"]
    # Completed rounds are kept so the next turn's history is valid (each call has its result).
    kept = events[-1].messages
    assert [m["role"] for m in kept] == ["assistant", "tool", "assistant", "tool"]


def test_bad_tool_arguments_go_back_to_the_model_as_an_error_result(store: Store):
    model = ScriptedModel(reply(tool_call("check_order_status", {"order": 12})), reply("Sorry, which order?"))
    events = run(scripted(settings(), model), ARTICLE, store)
    finished = by_type(events, ToolCallFinished)[0]
    assert not finished.ok and "order_id" in finished.error
    tool_msg = model.chat_bodies[1]["messages"][-1]
    assert tool_msg["role"] == "tool" and "order_id" in json.loads(tool_msg["content"])["error"]
    assert events[-1].ok and events[-1].text == "Sorry, which order?"


def test_an_unknown_tool_and_malformed_json_do_not_crash(store: Store):
    model = ScriptedModel(
        reply(tool_call("delete_everything")), reply(tool_call("check_order_status", "{not json")), reply("ok")
    )
    events = run(scripted(settings(), model), "hi", store)
    results = by_type(events, ToolCallFinished)
    assert [r.ok for r in results] == [False, False]
    assert "delete_everything" in results[0].error and "not valid JSON" in results[1].error and events[-1].ok


def test_usage_is_reported_as_the_server_sent_it(store: Store):
    model = ScriptedModel(reply(CHECK_48291, usage=(1500, 20)), reply("It is late.", usage=(1700, 9)))
    events = run(scripted(settings(), model), ARTICLE, store)
    records = [e.record for e in by_type(events, UsageReported)]
    assert [(r.purpose, r.prompt_tokens, r.completion_tokens, r.estimated) for r in records] == [
        ("answer", 1500, 20, False),
        ("tool_round", 1700, 9, False),
    ]


def test_usage_is_estimated_and_marked_when_the_server_sends_none(store: Store):
    model = ScriptedModel(reply("Your order ships tomorrow.", usage=None))
    events = run(scripted(settings(), model), ARTICLE, store)
    [record] = [e.record for e in by_type(events, UsageReported)]
    assert record.estimated and 0 < record.completion_tokens <= len("Your order ships tomorrow.")
    # The estimate covers what was really sent (system prompt, message and tool schemas), by an
    # independent count: the engine's tokenizer.
    body = model.chat_bodies[0]
    sent = count_messages(body["messages"]) + count_tools(body["tools"])
    assert sent / 2 <= record.prompt_tokens <= sent * 2


@pytest.mark.parametrize(
    ("step", "kind", "status"),
    [
        (error(401, "Incorrect API key provided.", code="invalid_api_key"), "auth", 401),
        (error(403), "forbidden", 403),
        (error(404, code="model_not_found"), "not_found", 404),
        (
            error(
                400,
                "This model's maximum context length is 131072 tokens. However, your messages resulted in 140000 "
                "tokens.",
                code="context_length_exceeded",
            ),
            "context_length",
            400,
        ),
        (error(400, "Invalid 'max_tokens': expected an integer."), "bad_request", 400),
        (error(429), "rate_limit", 429),
        (error(500), "server", 500),
        (Raw(502, {"content-type": "text/html"}, b"<html><h1>502 Bad Gateway</h1></html>"), "server", 502),
        (error(503), "server", 503),
        (Raw(504, {"content-type": "text/html"}, b"<html><h1>504 Gateway Time-out</h1></html>"), "server", 504),
        (empty_stream(), "empty_stream", None),
    ],
)
def test_each_api_failure_becomes_an_actionable_error_and_no_history(step, kind: str, status: int | None, store):
    events = run(scripted(settings(), ScriptedModel(step)), ARTICLE, store)
    errors = by_type(events, ErrorEvent)
    assert len(errors) == 1 and errors[0].kind == kind and errors[0].status == status
    assert len(errors[0].message) > 40  # a sentence that says what to do, not a code
    done = events[-1]
    assert isinstance(done, Done) and not done.ok and done.messages == []


def test_the_empty_stream_message_names_the_likely_cause(store: Store):
    events = run(scripted(settings(), ScriptedModel(empty_stream())), ARTICLE, store)
    assert "context window" in by_type(events, ErrorEvent)[0].message


def test_retries_are_made_by_the_sdk_and_every_attempt_is_accounted(store: Store):
    s = settings(max_retries=2)
    model = ScriptedModel(error(429), error(503), reply("Hello!"))
    events = run(scripted(s, model), "hello", store)
    assert events[-1].ok and len(model.chat_bodies) == 3  # the third attempt got through
    assert purposes(events) == ["retry", "retry", "answer"]
    # A retry in a later round is accounted in that round.
    model = ScriptedModel(reply(CHECK_48291), error(500), reply("Found it."))
    events = run(scripted(s, model), ARTICLE, store)
    assert events[-1].ok and len(model.chat_bodies) == 3
    assert purposes(events) == ["answer", "retry", "tool_round"]


def test_a_request_that_keeps_failing_is_tried_exactly_as_often_as_the_sdk_allows(store: Store):
    s = settings(max_retries=2)
    model = ScriptedModel(error(429), repeat_last=True)
    events = run(scripted(s, model), "hello", store)
    err = by_type(events, ErrorEvent)[0]
    assert err.kind == "rate_limit" and "3 attempts" in err.message
    assert len(model.chat_bodies) == 3 and purposes(events) == ["retry"] * 3
    # Not retryable (a 400, or a server that says so): one request, one record.
    for step in (error(400, "Unsupported parameter."), error(503, headers={"x-should-retry": "false"})):
        model = ScriptedModel(step, repeat_last=True)
        events = run(scripted(s, model), "hello", store)
        assert len(model.chat_bodies) == 1 and purposes(events) == ["retry"]


def test_a_timeout_says_so(store: Store):
    s = settings(request_timeout=0.3)
    events = run(scripted(s, ScriptedModel(timeout())), "hello", store)
    err = by_type(events, ErrorEvent)[0]
    assert err.kind == "timeout" and "0.3 s" in err.message and "SUPPORTBOT_REQUEST_TIMEOUT" in err.message


def test_a_stream_dropped_mid_answer_keeps_what_arrived(store: Store):
    model = ScriptedModel(reply("Your order is on its", drop=True))
    events = run(scripted(settings(), model), "hi", store)
    assert "".join(e.text for e in by_type(events, TextDelta)) == "Your order is on its"
    err = by_type(events, ErrorEvent)[0]
    assert err.kind == "connection" and "dropped mid-answer" in err.message
    assert not events[-1].ok and events[-1].messages == []


def test_a_stream_that_ends_without_a_finish_reason_is_a_cut_answer(store: Store):
    events = run(scripted(settings(), ScriptedModel(reply("Your order", finish_reason=None))), "hi", store)
    assert by_type(events, ErrorEvent)[0].kind == "protocol" and by_type(events, TextDelta)
    events = run(scripted(settings(), ScriptedModel(reply(finish_reason=None))), "hi", store)
    assert by_type(events, ErrorEvent)[0].kind == "empty_stream"
    assert not any(isinstance(e, TextDelta) for e in events)


def test_a_server_echoing_the_key_never_gets_it_shown(store: Store):
    secret = "sk-oxlo-very-secret-123"
    model = ScriptedModel(error(401, f"Incorrect API key provided: {secret}", code="invalid_api_key"))
    s = settings(api_key=secret, engine="live")
    events = run(scripted(s, model), "hi", store)
    err = by_type(events, ErrorEvent)[0]
    assert err.kind == "auth" and secret not in err.message and "***" in err.message
    assert model.requests[0].headers["authorization"] == f"Bearer {secret}"  # the request was really made


def test_an_answer_cut_at_max_tokens_says_so(store: Store):
    model = ScriptedModel(reply("Your order is", finish_reason="length"))
    events = run(scripted(settings(), model), "hi", store)
    assert events[-1].ok and events[-1].text == "Your order is"
    notice = by_type(events, Notice)[0].text
    assert "cut off" in notice and "SUPPORTBOT_MAX_OUTPUT_TOKENS" in notice


def test_a_reply_that_spent_its_budget_without_text_is_an_error_not_silence(store: Store):
    model = ScriptedModel(reply(finish_reason="length"))
    events = run(scripted(settings(), model), "hi", store)
    err = by_type(events, ErrorEvent)[0]
    assert err.kind == "truncated" and "output limit" in err.message and not events[-1].ok


def test_a_simulated_failure_waits_at_most_the_simulated_timeout_not_the_configured_one(store: Store) -> None:
    # On a public Space a simulated hang must not hold a turn slot for the real timeout on every retry.
    from supportbot.agent import SIMULATED_TIMEOUT_S

    s = settings(request_timeout=60)
    model = ScriptedModel(reply("One."), reply("Two."))
    agent = scripted(s, model)

    async def go(headers: dict[str, str]) -> None:
        history = [{"role": "user", "content": "hi"}]
        async for _ in agent.run_turn(history, LLAMA, ToolContext(store.sandbox("t")), headers=headers):
            pass

    asyncio.run(go({}))
    asyncio.run(go({"x-supportbot-fail": "timeout"}))
    plain, simulated = (r for r in model.requests if r.path.endswith("/chat/completions"))
    assert plain.timeout["read"] == 60
    assert simulated.timeout["read"] == SIMULATED_TIMEOUT_S < 60
    assert simulated.headers["x-supportbot-fail"] == "timeout"


def _sse_body(*events: str) -> Raw:
    return Raw(200, {"content-type": "text/event-stream"}, "".join(events).encode())


def _chunk(delta: Any = None, finish: Any = None, **extra: Any) -> str:
    choice = {"index": 0, "delta": delta if delta is not None else {}, "finish_reason": finish}
    return "data: " + json.dumps({"id": "c", "object": "chat.completion.chunk", "choices": [choice], **extra}) + "\n\n"


def test_a_stream_is_read_as_its_events_say_with_comments_and_event_names_and_no_final_blank_line(store: Store):
    body = _sse_body(
        ": a keep-alive comment\n\n",
        "event: message\n" + _chunk({"role": "assistant", "content": "Hel"}),
        _chunk({"content": "lo!"}),
        _chunk(finish="stop"),
        "data: " + json.dumps({"choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 3}}) + "\n",
    )
    events = run(scripted(settings(), ScriptedModel(body)), "hello", store)
    assert "".join(e.text for e in by_type(events, TextDelta)) == "Hello!" and events[-1].ok
    usage = by_type(events, UsageReported)[0].record
    assert (usage.prompt_tokens, usage.completion_tokens) == (12, 3)  # the last event, without its blank line


def test_odd_shapes_in_a_stream_are_skipped_not_a_crash(store: Store):
    body = _sse_body(
        "data: " + json.dumps({"choices": None}) + "\n\n",
        "data: " + json.dumps({"choices": ["text", {"delta": "text"}, {"delta": {"content": 5}}]}) + "\n\n",
        _chunk({"tool_calls": [{"index": "0", "id": 7, "function": "x"}, "junk"]}),
        _chunk({"content": "Fine."}, usage={"prompt_tokens": "many"}),
        _chunk(finish="stop"),
        "data: [DONE]\n\n",
    )
    events = run(scripted(settings(), ScriptedModel(body)), "hello", store)
    assert "".join(e.text for e in by_type(events, TextDelta)) == "Fine." and events[-1].ok


@pytest.mark.parametrize(
    ("event", "said"),
    [
        ("data: {not json\n\n", "not JSON"),
        ("data: [1, 2]\n\n", "not a JSON object"),
        ('data: {"error": {"message": "The worker ran out of memory."}}\n\n', "ran out of memory"),
    ],
)
def test_a_broken_or_error_event_mid_stream_ends_the_turn_with_a_message(event: str, said: str, store: Store):
    body = _sse_body(_chunk({"content": "Part of an answer"}), event, _chunk({"content": " never shown"}))
    events = run(scripted(settings(), ScriptedModel(body)), "hello", store)
    errors = by_type(events, ErrorEvent)
    assert len(errors) == 1 and said in errors[0].message
    assert "never shown" not in "".join(e.text for e in by_type(events, TextDelta))
    assert isinstance(events[-1], Done) and not events[-1].ok and events[-1].messages == []
