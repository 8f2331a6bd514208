"""The offline engine through the real openai SDK: in process and over loopback HTTP."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import socket
from collections.abc import Iterator
from typing import Literal

import httpx
import openai
import pytest
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from supportbot.engine import FAILURE_KINDS, OFFLINE_BASE_URL, OfflineEngine, RunningServer, start_server

MODEL = "llama-3.3-70b"
ORDER_Q = "Where is my order #48291? It was supposed to arrive yesterday and I am getting worried."


def fn_tool(name: str, **props: dict) -> dict:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": name,
            "parameters": {"type": "object", "properties": props, "required": list(props)},
        },
    }


TOOLS = [
    fn_tool("check_order_status", order_id={"type": "string"}),
    fn_tool("request_refund", order_id={"type": "string"}, reason={"type": "string"}),
    fn_tool("search_knowledge_base", query={"type": "string"}, top_k={"type": "integer", "minimum": 1}),
    fn_tool(
        "escalate_to_human",
        reason={"type": "string"},
        priority={"type": "string", "enum": ["low", "normal", "high", "urgent"]},
    ),
]
STATUS_RESULT = {
    "order_id": "48291",
    "status": "shipped",
    "carrier": "FastFreight",
    "tracking_number": "FF123",
    "eta": "2025-03-20",
    "is_late": True,
    "days_late": 2,
}


def sdk(engine: OfflineEngine, **kw: object) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=OFFLINE_BASE_URL,
        api_key="offline",
        max_retries=kw.pop("max_retries", 0),
        http_client=httpx.Client(transport=engine.transport()),
        **kw,
    )


@pytest.fixture
def engine() -> OfflineEngine:
    return OfflineEngine()


@pytest.fixture
def client(engine: OfflineEngine) -> openai.OpenAI:
    return sdk(engine)


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    running = start_server(OfflineEngine())
    yield running
    running.stop()


@pytest.fixture
def remote(server: RunningServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key="offline", max_retries=0, timeout=5)


def tool_turn(call_id: str, name: str, args: dict, result: object) -> list[dict]:
    return [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": call_id, "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}
            ],
        },
        {"role": "tool", "tool_call_id": call_id, "content": json.dumps(result)},
    ]


def assemble(stream: openai.Stream) -> tuple[str, dict[int, dict], list, str | None]:
    """Rebuild content and tool calls from the SDK's chunk objects, checking OpenAI's delta shape."""
    content, calls, chunks, finish = "", {}, [], None
    for chunk in stream:
        chunks.append(chunk)
        for choice in chunk.choices:
            content += choice.delta.content or ""
            finish = choice.finish_reason or finish
            for tc in choice.delta.tool_calls or ():
                if tc.index not in calls:
                    assert tc.id and tc.function.name, "first delta of a call carries id and name"
                    calls[tc.index] = {"id": tc.id, "name": tc.function.name, "arguments": ""}
                else:
                    assert tc.id is None and tc.function.name is None, "later deltas carry arguments only"
                calls[tc.index]["arguments"] += tc.function.arguments or ""
    return content, calls, chunks, finish


# -- models and tool calls ----------------------------------------------------


def test_models_list_in_process_and_over_loopback(client: openai.OpenAI, remote: openai.OpenAI) -> None:
    for c in (client, remote):
        ids = [m.id for m in c.models.list()]
        assert MODEL in ids and "offline-demo-engine" in ids
        assert c.models.list().data[0].owned_by == "offline demo engine"


def test_order_id_becomes_a_tool_call(client: openai.OpenAI, engine: OfflineEngine) -> None:
    r = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": ORDER_Q}], tools=TOOLS)
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    [call] = choice.message.tool_calls
    assert call.function.name == "check_order_status"
    assert json.loads(call.function.arguments) == {"order_id": "48291"}
    assert engine.requests[-1]["tools"] == TOOLS


@pytest.mark.parametrize("where", ["in_process", "loopback"])
def test_two_order_ids_stream_as_two_calls(where: str, client: openai.OpenAI, remote: openai.OpenAI) -> None:
    c = client if where == "in_process" else remote
    stream = c.chat.completions.create(
        model=MODEL,
        stream=True,
        tools=TOOLS,
        messages=[{"role": "user", "content": "Please check order 48291 and order #48300, both are late."}],
    )
    content, calls, chunks, finish = assemble(stream)
    assert finish == "tool_calls" and content == ""
    assert [c["name"] for c in calls.values()] == ["check_order_status"] * 2
    assert [json.loads(c["arguments"]) for c in calls.values()] == [{"order_id": "48291"}, {"order_id": "48300"}]
    assert calls[0]["id"] != calls[1]["id"]
    assert sum(1 for ch in chunks for x in ch.choices for _ in x.delta.tool_calls or ()) >= 6  # args split


def test_async_client_streams_text_in_several_deltas(engine: OfflineEngine) -> None:
    async def run() -> tuple[list[str], str | None]:
        client = openai.AsyncOpenAI(
            base_url=OFFLINE_BASE_URL,
            api_key="x",
            max_retries=0,
            http_client=httpx.AsyncClient(transport=engine.transport()),
        )
        stream = await client.chat.completions.create(
            model=MODEL,
            stream=True,
            messages=[
                {"role": "user", "content": ORDER_Q},
                *tool_turn("c1", "check_order_status", {"order_id": "48291"}, STATUS_RESULT),
            ],
            tools=TOOLS,
        )
        pieces, finish = [], None
        async for chunk in stream:
            pieces += [c.delta.content for c in chunk.choices if c.delta.content]
            finish = next((c.finish_reason for c in chunk.choices if c.finish_reason), finish)
        return pieces, finish

    pieces, finish = asyncio.run(run())
    assert len(pieces) > 5 and finish == "stop"
    assert "FastFreight" in "".join(pieces)


def test_tool_results_become_the_final_answer_without_looping(client: openai.OpenAI) -> None:
    messages = [
        {"role": "user", "content": ORDER_Q},
        *tool_turn("c1", "check_order_status", {"order_id": "48291"}, STATUS_RESULT),
    ]
    r = client.chat.completions.create(model=MODEL, messages=messages, tools=TOOLS)
    text = r.choices[0].message.content
    assert r.choices[0].finish_reason == "stop" and not r.choices[0].message.tool_calls
    assert "FastFreight" in text and "FF123" in text and "2025-03-20" in text and "sorry" in text.lower()
    assert "offline demo engine" in text


def test_spanish_customer_gets_spanish_answer(client: openai.OpenAI) -> None:
    messages = [
        {"role": "user", "content": "Hola, ¿dónde está mi pedido 48291? Todavía no llegó."},
        *tool_turn("c1", "check_order_status", {"order_id": "48291"}, STATUS_RESULT),
    ]
    text = client.chat.completions.create(model=MODEL, messages=messages, tools=TOOLS).choices[0].message.content
    assert "El pedido #48291 está **enviado**" in text and "Lamento el retraso" in text


def test_rules_for_refund_frustration_and_legal(client: openai.OpenAI) -> None:
    def calls(text: str) -> list[tuple[str, dict]]:
        r = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": text}], tools=TOOLS)
        return [(c.function.name, json.loads(c.function.arguments)) for c in r.choices[0].message.tool_calls or ()]

    [(name, args)] = calls("I want a refund for order 48291, it arrived broken.")
    assert name == "request_refund" and args["order_id"] == "48291" and "broken" in args["reason"]
    angry = calls("THIS IS RIDICULOUS!!! Order #48291 never came. Get me a manager.")
    assert [n for n, _ in angry] == ["check_order_status", "escalate_to_human"]
    assert angry[1][1]["priority"] == "high"
    assert calls("I'm calling my lawyer about this")[-1][1]["priority"] == "urgent"
    assert calls("How long do I have to return an item?")[0][0] == "search_knowledge_base"
    ask = client.chat.completions.create(
        model=MODEL, tools=TOOLS, messages=[{"role": "user", "content": "I want my money back"}]
    )
    assert ask.choices[0].message.tool_calls is None and "order number" in ask.choices[0].message.content


def test_only_offered_tools_are_called_and_tool_choice_is_honoured(client: openai.OpenAI) -> None:
    msg = [{"role": "user", "content": ORDER_Q}]
    only_kb = [TOOLS[2]]
    r = client.chat.completions.create(model=MODEL, messages=msg, tools=only_kb)
    assert r.choices[0].message.tool_calls is None  # check_order_status not offered
    r = client.chat.completions.create(model=MODEL, messages=msg, tools=TOOLS, tool_choice="none")
    assert r.choices[0].message.tool_calls is None and r.choices[0].finish_reason == "stop"
    r = client.chat.completions.create(
        model=MODEL,
        messages=msg,
        tools=TOOLS,
        tool_choice={"type": "function", "function": {"name": "escalate_to_human"}},
    )
    assert [c.function.name for c in r.choices[0].message.tool_calls] == ["escalate_to_human"]
    r = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}], tools=only_kb, tool_choice="required"
    )
    assert r.choices[0].message.tool_calls[0].function.name == "search_knowledge_base"


# -- usage, limits, formats ----------------------------------------------------


def test_usage_present_and_include_usage_chunk(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hello"}])
    assert r.usage.prompt_tokens > 0 and r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    _, _, chunks, _ = assemble(
        client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "hello"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0
    assert all(c.usage is None for c in chunks[:-1])


def test_usage_absent_when_disabled() -> None:
    client = sdk(OfflineEngine(send_usage=False))
    assert client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}]).usage is None
    _, _, chunks, _ = assemble(
        client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert all(c.usage is None for c in chunks) and chunks[-1].choices


def test_max_tokens_truncates_with_length(client: openai.OpenAI, engine: OfflineEngine) -> None:
    r = client.chat.completions.create(model=MODEL, max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    assert r.choices[0].finish_reason == "length" and 0 < len(r.choices[0].message.content) <= 24
    assert engine.requests[-1]["max_tokens"] == 5


def test_context_window_overflow_is_a_400(client: openai.OpenAI) -> None:
    huge = "word " * 140_000  # ~175k tokens of prose, over qwen-3-32b's 32k window
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="qwen-3-32b", messages=[{"role": "user", "content": huge}])
    assert err.value.code == "context_length_exceeded"
    assert "maximum context length is 32768 tokens. However, your messages resulted in" in err.value.message
    # The same prompt fits the 1M-token model.
    assert client.chat.completions.create(model="deepseek-v4-flash", messages=[{"role": "user", "content": huge}])


class Customer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str | None
    email: str | None


class TicketShape(BaseModel):
    model_config = ConfigDict(extra="forbid")
    customer: Customer | None
    order_ids: list[str]
    category: Literal["order_status", "refund", "returns", "technical", "account", "billing", "other"]
    sentiment: Literal["positive", "neutral", "negative"]
    frustration: int = Field(ge=0, le=3)
    priority: Literal["low", "normal", "high", "urgent"]
    language: str = Field(min_length=2, max_length=5)
    intent_summary: str
    tags: list[str] = Field(min_length=1)
    confidence: float = Field(gt=0, le=1)
    escalation_ticket_id: str | None
    needs_human: bool


def test_json_schema_response_validates_and_uses_the_conversation(client: openai.OpenAI) -> None:
    schema = TicketShape.model_json_schema()
    assert "$defs" in schema  # the nested model is a $ref: the builder must resolve it
    messages = [
        {"role": "user", "content": "THIS IS UNACCEPTABLE!!! Where is order #48291? maya@example.com"},
        *tool_turn("c1", "escalate_to_human", {"reason": "angry"}, {"ticket_id": "ESC-9F00AA", "queue_position": 3}),
    ]
    r = client.chat.completions.create(
        model=MODEL,
        messages=messages,
        response_format={"type": "json_schema", "json_schema": {"name": "ticket", "schema": schema, "strict": True}},
    )
    ticket = TicketShape.model_validate_json(r.choices[0].message.content)
    assert ticket.order_ids == ["48291"] and ticket.category == "order_status"
    assert ticket.customer == Customer(id=None, email="maya@example.com")
    assert ticket.sentiment == "negative" and ticket.frustration >= 2 and ticket.priority == "high"
    assert ticket.escalation_ticket_id == "ESC-9F00AA" and ticket.needs_human and ticket.language == "en"


def test_invalid_json_injection_breaks_one_json_reply_only(client: openai.OpenAI, engine: OfflineEngine) -> None:
    engine.inject("invalid_json")
    fmt = {"type": "json_object"}
    plain = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    assert plain.choices[0].message.content  # a non-JSON request leaves the injection queued
    bad = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], response_format=fmt)
    with pytest.raises(json.JSONDecodeError):
        json.loads(bad.choices[0].message.content)
    good = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}], response_format=fmt
    )
    assert isinstance(json.loads(good.choices[0].message.content), dict)


def test_image_answer_is_honest_about_offline_limits(client: openai.OpenAI) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (1280, 720), "white").save(buf, "PNG")
    url = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    r = client.chat.completions.create(
        model="gemma-3-27b",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What does this error say?"},
                    {"type": "image_url", "image_url": {"url": url}},
                ],
            }
        ],
    )
    text = r.choices[0].message.content
    assert "PNG image of 1280×720 pixels" in text and "screenshot" in text and "vision model" in text


def test_never_claims_to_be_a_language_model(client: openai.OpenAI) -> None:
    for prompt in ("hello", "are you an AI?", "I want a refund", "How do I reset my password?", ORDER_Q):
        text = (
            client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": prompt}])
            .choices[0]
            .message.content
        )
        assert "language model" not in text.lower() and "as an ai" not in text.lower()
        assert text.endswith("_(offline demo engine)_")


# -- validation and failures -----------------------------------------------------


def test_requests_are_validated_like_a_real_server(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=MODEL, messages=[{"role": "tool", "tool_call_id": "x", "content": "1"}])
    assert "preceeding message with 'tool_calls'" in err.value.message
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=MODEL, messages=[{"role": "robot", "content": "hi"}])
    assert err.value.param == "messages.[0].role"
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=MODEL, messages=[])
    with pytest.raises(openai.NotFoundError) as nf:
        client.chat.completions.create(model="gpt-nope", messages=[{"role": "user", "content": "hi"}])
    assert nf.value.code == "model_not_found"


ERRORS = {
    "auth": openai.AuthenticationError,
    "forbidden": openai.PermissionDeniedError,
    "not_found": openai.NotFoundError,
    "context_length": openai.BadRequestError,
    "bad_request": openai.BadRequestError,
    "rate_limit": openai.RateLimitError,
    "server": openai.InternalServerError,
    "bad_gateway": openai.InternalServerError,
    "unavailable": openai.InternalServerError,
    "gateway_timeout": openai.InternalServerError,
}


@pytest.mark.parametrize("kind", list(ERRORS))
def test_injected_errors_surface_as_sdk_exceptions(kind: str, client: openai.OpenAI, engine: OfflineEngine) -> None:
    engine.inject(kind)
    with pytest.raises(ERRORS[kind]) as err:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    if kind == "context_length":
        assert err.value.code == "context_length_exceeded"
    assert client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])  # used up


def test_sdk_retries_count_each_request(engine: OfflineEngine) -> None:
    engine.inject("rate_limit", times=2)
    r = sdk(engine, max_retries=2).chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    assert r.choices[0].finish_reason == "stop" and len(engine.requests) == 3


def test_timeout_in_process_and_over_loopback(engine: OfflineEngine, server: RunningServer) -> None:
    engine.inject("timeout")
    with pytest.raises(openai.APITimeoutError):
        sdk(engine, timeout=0.2).chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    remote = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0, timeout=0.3)
    with pytest.raises(openai.APITimeoutError):
        remote.chat.completions.create(model="fail-timeout", messages=[{"role": "user", "content": "hi"}])


def test_closed_port_is_a_connection_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound but not listening: connections are refused
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0, timeout=2)
        with pytest.raises(openai.APIConnectionError):
            client.models.list()


@pytest.mark.parametrize("where", ["in_process", "loopback"])
def test_empty_stream_and_disconnect(where: str, client: openai.OpenAI, remote: openai.OpenAI) -> None:
    c = client if where == "in_process" else remote
    msgs = [{"role": "user", "content": "hello there, I need help"}]
    assert list(c.chat.completions.create(model="fail-empty_stream", messages=msgs, stream=True)) == []
    stream = c.chat.completions.create(
        model=MODEL, messages=msgs, stream=True, tools=TOOLS, extra_headers={"X-Supportbot-Fail": "disconnect"}
    )
    seen = []
    with pytest.raises((httpx.RemoteProtocolError, openai.APIConnectionError)):
        for chunk in stream:
            seen.append(chunk)
    assert any(ch.choices[0].delta.content for ch in seen)  # some text arrived before the drop
    assert all(ch.choices[0].finish_reason is None for ch in seen)


@pytest.mark.parametrize("kind", ["auth", "forbidden", "rate_limit", "bad_gateway", "context_length"])
def test_fail_models_and_header_over_loopback(kind: str, remote: openai.OpenAI) -> None:
    msgs = [{"role": "user", "content": "hi"}]
    with pytest.raises(ERRORS[kind]):
        remote.chat.completions.create(model=f"fail-{kind}", messages=msgs)
    with pytest.raises(ERRORS[kind]):
        remote.chat.completions.create(model=MODEL, messages=msgs, extra_headers={"X-Supportbot-Fail": kind})
    assert remote.chat.completions.create(model=MODEL, messages=msgs).choices[0].message.content


def test_inject_rejects_unknown_kinds(engine: OfflineEngine) -> None:
    assert "timeout" in FAILURE_KINDS and "empty_stream" in FAILURE_KINDS
    with pytest.raises(ValueError, match="unknown failure kind"):
        engine.inject("meteor")


def test_fenced_log_gets_a_deterministic_analysis(client: openai.OpenAI) -> None:
    from supportbot.vocabulary import fence_log

    log = "\n".join(
        [f"2025-03-14 10:00:{i:02d} ERROR upstream timeout after 30s id={i}" for i in range(5)]
        + ["2025-03-14 10:01:00 INFO ok"] * 3
    )
    text = (
        client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "It keeps failing:\n" + fence_log(log, "app.log")}]
        )
        .choices[0]
        .message.content
    )
    assert "8 lines" in text and "ERROR 5" in text and "INFO 3" in text
    assert "2025-03-14 10:00:00" in text and "2025-03-14 10:00:04" in text and "next step" in text


def test_update_ticket_is_called_with_schema_valid_fields(client: openai.OpenAI) -> None:
    update = {
        "type": "function",
        "function": {
            "name": "update_ticket",
            "parameters": {
                "type": "object",
                "properties": {
                    "category": {
                        "anyOf": [
                            {"enum": ["order_status", "refund", "returns", "other"], "type": "string"},
                            {"type": "null"},
                        ],
                        "default": None,
                    },
                    "frustration": {"anyOf": [{"type": "integer", "minimum": 0, "maximum": 3}, {"type": "null"}]},
                    "language": {"type": "string"},
                },
            },
        },
    }
    r = client.chat.completions.create(
        model=MODEL,
        tools=[*TOOLS, update],
        messages=[{"role": "user", "content": "Hola, ¿dónde está mi pedido 48291? Es inaceptable!!!"}],
    )
    calls = {c.function.name: json.loads(c.function.arguments) for c in r.choices[0].message.tool_calls}
    assert calls["update_ticket"] == {"category": "order_status", "frustration": 3, "language": "es"}
    assert set(calls) == {"check_order_status", "escalate_to_human", "update_ticket"}


def test_the_engine_serving_an_app_keeps_no_request_bodies(tmp_path) -> None:
    """A hosted offline demo runs for weeks: the engine the app makes must not keep every request."""
    import asyncio

    from supportbot.client import ClientFactory
    from supportbot.config import Settings

    settings = Settings.load({"data_dir": tmp_path, "engine": "offline"}, environ={}, dotenv_path=None)
    factory = ClientFactory(settings)

    async def ask() -> str:
        reply = await factory.get().chat.completions.create(
            model=MODEL, max_tokens=64, messages=[{"role": "user", "content": "hello"}]
        )
        return reply.choices[0].message.content or ""

    assert asyncio.run(ask())  # it answered
    assert factory.engine.requests == []
