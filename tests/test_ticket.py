"""The support ticket: its reviewed schema, inline building, and extraction through the real SDK."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import openai
import pytest

from supportbot.engine import OfflineEngine
from supportbot.routing.catalog import load_catalog
from supportbot.ticket.extraction import Extraction, extract_ticket, extraction_messages
from supportbot.ticket.record import Ticket, build_inline, ticket_id_for, ticket_json_schema

EXPECTED = Path(__file__).parent / "expected" / "ticket_schema.json"
CONV = "k3J9xQ2mZpL7vR1sT8uW0a"

ARTICLE_MESSAGES = [
    {
        "role": "user",
        "content": "Where is my order #48291? It was supposed to arrive yesterday and I am getting worried.",
    },
    {"role": "assistant", "content": "Order 48291 is in transit with UPS and should arrive tomorrow."},
    {"role": "user", "content": "This is ridiculous, I want to talk to a human NOW"},
    {
        "role": "assistant",
        "content": "I understand. I have passed your case to a colleague: ticket ESC-1A2B3C, you are number 2 in the queue.",
    },
]
ARTICLE_CALLS = [
    {
        "name": "check_order_status",
        "arguments": {"order_id": "48291"},
        "result": {"order_id": "48291", "status": "in_transit", "carrier": "UPS", "eta_days": 1},
        "ok": True,
        "error": None,
        "duration_ms": 11.0,
    },
    {
        "name": "escalate_to_human",
        "arguments": {"reason": "Customer is frustrated about late order 48291"},
        "result": {"ticket_id": "ESC-1A2B3C", "queue_position": 2},
        "ok": True,
        "error": None,
        "duration_ms": 7.5,
    },
]


def test_schema_matches_reviewed_file():
    assert ticket_json_schema() == json.loads(EXPECTED.read_text(encoding="utf-8"))


def test_schema_is_strict_everywhere():
    def objects(node):
        if isinstance(node, dict):
            if node.get("type") == "object":
                yield node
            for v in node.values():
                yield from objects(v)
        elif isinstance(node, list):
            for v in node:
                yield from objects(v)

    schema = ticket_json_schema()
    found = list(objects(schema))
    assert len(found) == 3  # ticket, customer, action
    for obj in found:
        assert obj["additionalProperties"] is False
        assert obj["required"] == list(obj["properties"])
    text = json.dumps(schema)
    assert '"title"' not in text and '"default"' not in text and "$ref" not in text
    assert set(schema["properties"]) == set(Ticket.model_fields)


def test_inline_article_conversation_escalates():
    t = build_inline(conversation_id=CONV, messages=ARTICLE_MESSAGES, tool_calls=ARTICLE_CALLS, ticket_fields={})
    assert t.category == "order_status"
    assert t.order_ids == ["48291"]
    assert t.frustration >= 2
    assert t.sentiment == "negative"
    assert t.escalation_ticket_id == "ESC-1A2B3C"
    assert t.status == "escalated"
    assert t.priority in ("high", "urgent")
    assert t.language == "en"
    assert t.ticket_id == ticket_id_for(CONV) and t.ticket_id.startswith("TCK-")
    assert CONV[:6] not in t.ticket_id  # the secret conversation id does not leak into the ticket
    assert [(a.tool, a.ok) for a in t.actions_taken] == [("check_order_status", True), ("escalate_to_human", True)]
    assert "ESC-1A2B3C" in t.actions_taken[1].outcome and "queue position 2" in t.actions_taken[1].outcome
    assert any("ESC-1A2B3C" in step for step in t.next_steps)


def test_first_message_alone_is_mild_and_open():
    t = build_inline(conversation_id=CONV, messages=ARTICLE_MESSAGES[:1], tool_calls=[], ticket_fields={})
    assert t.order_ids == ["48291"]
    assert t.category == "order_status"
    assert t.frustration == 1  # "worried", no anger
    assert t.status == "open"  # no answer yet: nothing decided
    assert t.escalation_ticket_id is None


def test_model_fields_beat_heuristics_and_tool_facts_beat_both():
    fields = {
        "category": "billing",
        "priority": "low",
        "sentiment": "furious",
        "frustration": 1,
        "escalation_ticket_id": "ESC-FAKE",
        "next_steps": ["Call back"],
    }
    t = build_inline(conversation_id=CONV, messages=ARTICLE_MESSAGES, tool_calls=ARTICLE_CALLS, ticket_fields=fields)
    assert t.category == "billing" and t.priority == "low" and t.frustration == 1
    assert t.next_steps == ["Call back"]
    assert t.sentiment == "negative"  # "furious" is not a sentiment: the heuristic stays
    assert t.escalation_ticket_id == "ESC-1A2B3C"  # not a model field; the tool's id wins
    assert t.status == "escalated"


def test_status_question_versus_courtesy_question():
    asked = ARTICLE_MESSAGES[:1] + [{"role": "assistant", "content": "Could you tell me the email on the order?"}]
    done = ARTICLE_MESSAGES[:1] + [
        {"role": "assistant", "content": "It arrives tomorrow. Is there anything else I can help you with?"}
    ]
    assert (
        build_inline(conversation_id=CONV, messages=asked, tool_calls=[], ticket_fields={}).status == "pending_customer"
    )
    # Answered, but nothing decided and the customer has not confirmed: still open.
    assert build_inline(conversation_id=CONV, messages=done, tool_calls=[], ticket_fields={}).status == "open"
    thanked = done + [{"role": "user", "content": "Great, thanks, that solves it"}, done[1]]
    assert build_inline(conversation_id=CONV, messages=thanked, tool_calls=[], ticket_fields={}).status == "resolved"
    not_yet = done + [{"role": "user", "content": "Thanks, but it still has not arrived"}, done[1]]
    assert build_inline(conversation_id=CONV, messages=not_yet, tool_calls=[], ticket_fields={}).status == "open"


def test_refund_customer_email_language_and_failed_tool():
    messages = [
        {"role": "user", "content": "Hola, quiero un reembolso del pedido 48215, mi correo es priya.raman@example.org"}
    ]
    calls = [
        {
            "name": "lookup_customer",
            "arguments": {"email": "priya.raman@example.org"},
            "result": {
                "customer": {"id": "C1003", "email": "priya.raman@example.org", "name": "Priya Raman"},
                "recent_orders": [],
            },
            "ok": True,
            "error": None,
            "duration_ms": 3,
        },
        {
            "name": "request_refund",
            "arguments": {"order_id": "48215", "reason": "damaged"},
            "result": None,
            "ok": False,
            "error": "order 48215 was already refunded",
            "duration_ms": 4,
        },
    ]
    t = build_inline(conversation_id=CONV, messages=messages, tool_calls=calls, ticket_fields={})
    assert t.category == "refund"
    assert t.customer is not None and t.customer.id == "C1003" and t.customer.email == "priya.raman@example.org"
    assert t.order_ids == ["48215"]
    assert t.language == "es"
    refund = t.actions_taken[1]
    assert refund.ok is False
    assert refund.outcome == "Could not request a refund for order 48215: order 48215 was already refunded."


@pytest.mark.parametrize(
    ("text", "category"),
    [
        ("I really appreciate the help, thanks!", "other"),  # "app" inside "appreciate" is not the app
        ("I cannot login to my account", "account"),  # "log" inside "login" is not a log file
        ("The app crashes with an error on start", "technical"),
        ("I was charged twice, where is the invoice", "billing"),
        ("I'd like to return the keyboard", "returns"),
        ("My package has not arrived", "order_status"),
    ],
)
def test_category_keywords_match_whole_words(text, category):
    t = build_inline(
        conversation_id=CONV, messages=[{"role": "user", "content": text}], tool_calls=[], ticket_fields={}
    )
    assert t.category == category


def test_successful_refund_outcome():
    calls = [
        {
            "name": "request_refund",
            "arguments": {"order_id": "48210", "reason": "damaged"},
            "result": {
                "refund_id": "RF-1",
                "order_id": "48210",
                "outcome": "approved",
                "amount": 119.0,
                "currency": "USD",
                "explanation": "within 30 days",
            },
            "ok": True,
            "error": None,
            "duration_ms": 5,
        }
    ]
    msgs = [
        {"role": "user", "content": "The keyboard from order 48210 arrived broken, I want my money back"},
        {"role": "assistant", "content": "Done: your refund of 119.00 USD is approved."},
    ]
    t = build_inline(conversation_id=CONV, messages=msgs, tool_calls=calls, ticket_fields={})
    assert t.category == "refund" and t.status == "resolved" and t.order_ids == ["48210"]
    assert t.actions_taken[0].outcome == "Refunded order 48210 in full (119.00 USD)."
    assert t.priority == "high"


def test_previous_ticket_keeps_its_facts():
    first = build_inline(conversation_id=CONV, messages=ARTICLE_MESSAGES, tool_calls=ARTICLE_CALLS, ticket_fields={})
    later = ARTICLE_MESSAGES + [{"role": "user", "content": "Also my email is maya.thompson@example.com, thanks"}]
    t = build_inline(conversation_id=CONV, messages=later, tool_calls=ARTICLE_CALLS, ticket_fields={}, previous=first)
    assert t.ticket_id == first.ticket_id
    assert t.escalation_ticket_id == "ESC-1A2B3C" and t.status == "escalated"
    assert len(t.actions_taken) == 2  # the same calls are not counted twice
    assert t.customer is not None and t.customer.email == "maya.thompson@example.com"


def test_extraction_prompt_pieces_are_separate_lines():
    msgs = extraction_messages(
        conversation_id=CONV, messages=ARTICLE_MESSAGES, tool_calls=ARTICLE_CALLS, schema_in_prompt=True
    )
    system = msgs[0]["content"]
    assert "reply with a single json object" in system.lower()
    assert json.dumps(ticket_json_schema()) in system
    assert "ESC-1A2B3C" in msgs[1]["content"] and "#48291" in msgs[1]["content"]
    no_schema = extraction_messages(
        conversation_id=CONV, messages=ARTICLE_MESSAGES, tool_calls=[], schema_in_prompt=False
    )
    assert '"properties"' not in no_schema[0]["content"]


# ---------------------------------------------------------------- through the SDK and the offline engine


@pytest.fixture
def engine() -> OfflineEngine:
    return OfflineEngine(send_usage=True)


def _client(engine) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url="http://offline.engine/v1",
        api_key="offline",
        http_client=httpx.AsyncClient(transport=engine.transport()),
        max_retries=0,
    )


def _extract(engine, model_id: str) -> Extraction:
    async def run() -> Extraction:
        client = _client(engine)
        try:
            return await extract_ticket(
                client,
                load_catalog().get(model_id),
                conversation_id=CONV,
                messages=ARTICLE_MESSAGES,
                tool_calls=ARTICLE_CALLS,
                max_tokens=700,
                turn=2,
            )
        finally:
            await client.close()

    return asyncio.run(run())


def test_extraction_valid(engine):
    result = _extract(engine, "llama-3.3-70b")
    assert result.error is None, result.error
    t = result.ticket
    assert t is not None
    assert "48291" in t.order_ids
    assert t.escalation_ticket_id == "ESC-1A2B3C" and t.status == "escalated"
    assert t.ticket_id == ticket_id_for(CONV)
    assert [u.purpose for u in result.usage] == ["ticket_extraction"]
    u = result.usage[0]
    assert u.estimated is False and u.prompt_tokens > 0 and u.turn == 2 and u.latency_ms > 0
    sent = engine.requests[-1]
    assert sent["response_format"]["type"] == "json_schema"
    assert sent["response_format"]["json_schema"]["strict"] is True
    assert sent["response_format"]["json_schema"]["schema"] == ticket_json_schema()
    assert sent["max_tokens"] == 700


def test_extraction_invalid_then_repaired(engine):
    engine.inject("invalid_json", times=1)
    result = _extract(engine, "llama-3.3-70b")
    assert result.error is None, result.error
    assert result.ticket is not None
    assert [u.purpose for u in result.usage] == ["ticket_extraction", "ticket_repair"]
    repair_prompt = engine.requests[-1]["messages"][-1]["content"]
    assert "not a valid ticket" in repair_prompt


def test_extraction_invalid_twice_gives_error_not_exception(engine):
    engine.inject("invalid_json", times=2)
    result = _extract(engine, "llama-3.3-70b")
    assert result.ticket is None
    assert result.error is not None and "invalid ticket twice" in result.error
    assert [u.purpose for u in result.usage] == ["ticket_extraction", "ticket_repair"]


def test_extraction_json_mode_fallback_for_model_without_json_schema(engine):
    model = load_catalog().get("deepseek-r1-0528")
    assert model.capabilities.json_schema is False
    result = _extract(engine, model.id)
    first = engine.requests[0]
    assert first["response_format"] == {"type": "json_object"}
    assert '"additionalProperties": false' in first["messages"][0]["content"]  # the schema travels in the prompt
    # JSON mode with the schema in the prompt still yields a valid ticket, in one request.
    assert result.error is None, result.error
    assert result.ticket is not None and result.ticket.order_ids == ["48291"]
    assert result.ticket.escalation_ticket_id == "ESC-1A2B3C" and result.ticket.status == "escalated"
    assert [u.purpose for u in result.usage] == ["ticket_extraction"]


def test_extraction_api_error_becomes_message(engine):
    engine.inject("rate_limit", times=1)
    result = _extract(engine, "llama-3.3-70b")
    assert result.ticket is None
    assert result.error is not None and "429" in result.error and "Rate limit" in result.error


def test_an_extraction_error_never_shows_the_api_key():
    import asyncio

    import httpx
    import openai

    from supportbot.routing.catalog import load_catalog
    from supportbot.ticket.extraction import extract_ticket

    secret = "sk-oxlo-very-secret-123"
    body = {
        "error": {
            "message": f"Incorrect API key provided: {secret}",
            "type": "invalid_request_error",
            "code": "invalid_api_key",
        }
    }
    http = httpx.AsyncClient(transport=httpx.MockTransport(lambda request: httpx.Response(401, json=body)))
    client = openai.AsyncOpenAI(base_url="http://service.test/v1", api_key=secret, http_client=http, max_retries=0)
    result = asyncio.run(
        extract_ticket(
            client,
            load_catalog().get("llama-3.3-70b"),
            conversation_id="c1",
            messages=[{"role": "user", "content": "Where is my order #48291?"}],
            tool_calls=[],
            max_tokens=512,
            turn=1,
        )
    )
    assert result.ticket is None and "401" in result.error
    assert secret not in result.error and "***" in result.error
