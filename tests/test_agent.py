"""The agent loop through the real openai SDK: offline engine in-process and over
loopback HTTP, scripted servers at the HTTP layer for the step limit and bad arguments."""

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
from supportbot.events import Done, ErrorEvent, TextDelta, ToolCallFinished, ToolCallStarted, UsageReported
from supportbot.routing.catalog import load_catalog
from supportbot.storage.store import Store
from supportbot.tools import ToolContext

CATALOG = load_catalog()
LLAMA = CATALOG.get("llama-3.3-70b")
ARTICLE = "Where is my order #48291? It was supposed to arrive yesterday and I am getting worried."


def settings(**overrides: Any) -> Settings:
    return Settings.load({"max_retries": 0, "request_timeout": 5, **overrides}, environ={}, dotenv_path=None)


def run(agent: Agent, text: str, store: Store, model=LLAMA) -> list:
    async def go():
        return [
            e async for e in agent.run_turn([{"role": "user", "content": text}], model, ToolContext(store.sandbox("t")))
        ]

    return asyncio.run(go())


@pytest.fixture(scope="module")
def server():
    engine = OfflineEngine()
    with start_server(engine) as running:
        yield engine, running


def by_type(events: list, kind: type) -> list:
    return [e for e in events if isinstance(e, kind)]


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


def test_usage_is_estimated_and_marked_when_the_server_sends_none(store: Store):
    engine = OfflineEngine(send_usage=False)
    events = run(Agent(settings(), ClientFactory(settings(), engine)), ARTICLE, store)
    records = [e.record for e in by_type(events, UsageReported)]
    assert records and all(r.estimated and r.prompt_tokens > 100 and r.completion_tokens > 0 for r in records)


@pytest.mark.parametrize(
    ("kind", "expected", "status"),
    [
        ("auth", "auth", 401),
        ("forbidden", "forbidden", 403),
        ("not_found", "not_found", 404),
        ("context_length", "context_length", 400),
        ("rate_limit", "rate_limit", 429),
        ("server", "server", 500),
        ("bad_gateway", "server", 502),
        ("unavailable", "server", 503),
        ("gateway_timeout", "server", 504),
        ("empty_stream", "empty_stream", None),
    ],
)
def test_each_api_failure_becomes_an_actionable_error_and_no_history(
    kind: str, expected: str, status: int | None, store: Store
):
    engine = OfflineEngine()
    engine.inject(kind, times=5)
    events = run(Agent(settings(), ClientFactory(settings(), engine)), ARTICLE, store)
    errors = by_type(events, ErrorEvent)
    assert len(errors) == 1 and errors[0].kind == expected and errors[0].status == status
    assert len(errors[0].message) > 40  # a sentence that says what to do, not a code
    done = events[-1]
    assert isinstance(done, Done) and not done.ok and done.messages == []


def test_the_empty_stream_message_names_the_likely_cause(store: Store):
    engine = OfflineEngine()
    engine.inject("empty_stream")
    events = run(Agent(settings(), ClientFactory(settings(), engine)), ARTICLE, store)
    assert "context window" in by_type(events, ErrorEvent)[0].message


def test_retries_are_bounded_and_made_by_the_sdk(store: Store):
    engine = OfflineEngine()
    engine.inject("rate_limit", times=2)
    s = settings(max_retries=2)
    events = run(Agent(s, ClientFactory(s, engine)), "hello", store)
    assert events[-1].ok  # the third attempt got through
    purposes = [e.record.purpose for e in by_type(events, UsageReported)]
    assert purposes[:3] == ["retry", "retry", "answer"] and "retry" not in purposes[3:]  # every request is accounted
    engine.inject("rate_limit", times=10)
    events = run(Agent(s, ClientFactory(s, engine)), "hello", store)
    assert (
        by_type(events, ErrorEvent)[0].kind == "rate_limit" and "3 attempts" in by_type(events, ErrorEvent)[0].message
    )
    assert [e.record.purpose for e in by_type(events, UsageReported)] == ["retry"] * 3
    assert engine.pending_failures().count("rate_limit") == 7  # exactly 3 requests were made


def test_a_timeout_and_a_refused_connection(store: Store):
    engine = OfflineEngine()
    engine.inject("timeout")
    s = settings(request_timeout=0.5)
    events = run(Agent(s, ClientFactory(s, engine)), "hello", store)
    assert by_type(events, ErrorEvent)[0].kind == "timeout"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again before use: nothing listens there
    s = settings(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", engine="live")
    events = run(Agent(s, ClientFactory(s)), "hello", store)
    err = by_type(events, ErrorEvent)[0]
    assert err.kind == "connection" and f"127.0.0.1:{port}" in err.message


def test_a_dropped_stream_keeps_what_arrived_and_says_it_was_cut(server, store: Store):
    engine, running = server
    engine.inject("disconnect")
    s = settings(base_url=running.base_url, api_key="loopback", engine="live")
    events = run(Agent(s, ClientFactory(s)), "hello there", store)
    err = by_type(events, ErrorEvent)[0]
    assert err.kind in ("protocol", "connection") and ("dropped mid-answer" in err.message or "cut off" in err.message)
    assert by_type(events, TextDelta)  # what arrived was streamed before the drop
    assert not events[-1].ok


# --- scripted servers: fake at the HTTP layer, the SDK stays real ---------------------------


def sse(*chunks: dict) -> httpx.Response:
    body = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
    return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body.encode())


def chunk(delta: dict, finish: str | None = None) -> dict:
    return {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def tool_call_response(name: str, arguments: str, call_id: str = "call_1") -> httpx.Response:
    return sse(
        chunk(
            {
                "role": "assistant",
                "tool_calls": [
                    {"index": 0, "id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}
                ],
            }
        ),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": arguments[:5]}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": arguments[5:]}}]}),
        chunk({}, "tool_calls"),
    )


class Scripted:
    """An httpx transport answering chat requests from a list of responses (the last repeats)."""

    def __init__(self, *responses):
        self.responses = list(responses)
        self.bodies: list[dict] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.bodies.append(json.loads(request.content))
        return self.responses.pop(0) if len(self.responses) > 1 else self.responses[0]


def scripted_factory(s: Settings, script: Scripted) -> ClientFactory:
    class Engine:
        def transport(self):
            return httpx.MockTransport(script)

    return ClientFactory(s, Engine())


def test_the_step_limit_ends_with_a_clear_message_not_silence(store: Store):
    script = Scripted(tool_call_response("check_order_status", '{"order_id": "48291"}'))
    s = settings(max_tool_steps=2)
    events = run(Agent(s, scripted_factory(s, script)), ARTICLE, store)
    assert len(by_type(events, ToolCallFinished)) == 2
    err = by_type(events, ErrorEvent)[0]
    assert err.kind == "step_limit" and "2 tool rounds" in err.message
    assert len(script.bodies) == 3 and not events[-1].ok
    # Completed rounds are kept so the next turn's history is valid (each call has its result).
    kept = events[-1].messages
    assert [m["role"] for m in kept] == ["assistant", "tool", "assistant", "tool"]


def test_bad_tool_arguments_go_back_to_the_model_as_an_error_result(store: Store):
    final = sse(chunk({"role": "assistant", "content": "Sorry, which order?"}), chunk({}, "stop"))
    script = Scripted(tool_call_response("check_order_status", '{"order": 12}'), final)
    s = settings()
    events = run(Agent(s, scripted_factory(s, script)), ARTICLE, store)
    finished = by_type(events, ToolCallFinished)[0]
    assert not finished.ok and "order_id" in finished.error
    tool_msg = script.bodies[1]["messages"][-1]
    assert tool_msg["role"] == "tool" and "order_id" in json.loads(tool_msg["content"])["error"]
    assert events[-1].ok and events[-1].text == "Sorry, which order?"


def test_an_unknown_tool_and_malformed_json_do_not_crash(store: Store):
    final = sse(chunk({"role": "assistant", "content": "ok"}), chunk({}, "stop"))
    script = Scripted(
        tool_call_response("delete_everything", "{}"), tool_call_response("check_order_status", "{not json"), final
    )
    s = settings()
    events = run(Agent(s, scripted_factory(s, script)), "hi", store)
    results = by_type(events, ToolCallFinished)
    assert [r.ok for r in results] == [False, False]
    assert "delete_everything" in results[0].error and events[-1].ok


def test_a_stream_with_no_finish_and_no_content_is_a_failure_not_an_empty_answer(store: Store):
    script = Scripted(httpx.Response(200, headers={"content-type": "text/event-stream"}, content=b""))
    s = settings()
    events = run(Agent(s, scripted_factory(s, script)), "hi", store)
    assert by_type(events, ErrorEvent)[0].kind == "empty_stream"
    assert not any(isinstance(e, TextDelta) for e in events)


def test_one_client_per_event_loop():
    factory = ClientFactory(settings(), OfflineEngine())

    async def grab():
        return factory.get(), factory.get()

    a1, a2 = asyncio.run(grab())
    b1, _ = asyncio.run(grab())
    assert a1 is a2 and a1 is not b1


def test_the_sync_and_async_sdk_both_work_in_process(store: Store):
    import openai

    engine = OfflineEngine()
    client = openai.OpenAI(
        base_url="http://offline.engine/v1", api_key="offline", http_client=httpx.Client(transport=engine.transport())
    )
    reply = client.chat.completions.create(
        model="llama-3.3-70b", messages=[{"role": "user", "content": "hello"}], max_tokens=200
    )
    assert reply.choices[0].message.content and reply.usage.total_tokens > 0


def test_a_server_echoing_the_key_never_gets_it_shown(store: Store):
    secret = "sk-oxlo-very-secret-123"
    body = {
        "error": {
            "message": f"Incorrect API key provided: {secret}",
            "type": "invalid_request_error",
            "code": "invalid_api_key",
        }
    }
    script = Scripted(httpx.Response(401, json=body))
    s = settings(api_key=secret, engine="live")
    events = run(Agent(s, scripted_factory(s, script)), "hi", store)
    err = by_type(events, ErrorEvent)[0]
    assert err.kind == "auth" and secret not in err.message and "***" in err.message
    assert script.bodies  # the request was really made


def test_an_answer_cut_at_max_tokens_says_so(store: Store):
    script = Scripted(sse(chunk({"role": "assistant", "content": "Your order is"}), chunk({}, "length")))
    s = settings()
    events = run(Agent(s, scripted_factory(s, script)), "hi", store)
    from supportbot.events import Notice

    assert events[-1].ok and events[-1].text == "Your order is"
    assert (
        "cut off" in by_type(events, Notice)[0].text
        and "SUPPORTBOT_MAX_OUTPUT_TOKENS" in by_type(events, Notice)[0].text
    )


def test_a_reply_that_spent_its_budget_without_text_is_an_error_not_silence(store: Store):
    script = Scripted(sse(chunk({"role": "assistant", "content": ""}), chunk({}, "length")))
    s = settings()
    events = run(Agent(s, scripted_factory(s, script)), "hi", store)
    err = by_type(events, ErrorEvent)[0]
    assert err.kind == "truncated" and "output limit" in err.message and not events[-1].ok
