"""The tool registry and the support tools, called the way the agent calls them."""

from __future__ import annotations

import asyncio
import json
from datetime import date
from typing import Annotated, Any

import pytest
from pydantic import Field

from supportbot.errors import ToolError
from supportbot.storage.demo_data import Policy
from supportbot.storage.store import Store
from supportbot.tools import REGISTRY, ToolContext, ToolRegistry, ToolResult, refund_decision

TOOL_NAMES = [
    "check_order_status",
    "lookup_customer",
    "search_knowledge_base",
    "request_refund",
    "escalate_to_human",
    "update_ticket",
]


@pytest.fixture
def ctx(store: Store) -> ToolContext:
    return ToolContext(store=store.sandbox("conv-1"), conversation_id="conv-1")


def call(name: str, arguments: Any, ctx: ToolContext, registry: ToolRegistry = REGISTRY) -> ToolResult:
    raw = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return asyncio.run(registry.run("call-1", name, raw, ctx))


def schema_of(name: str) -> dict[str, Any]:
    return REGISTRY.schemas([name])[0]


# --- schemas ------------------------------------------------------------------------------------


def test_registry_names_are_the_public_promise() -> None:
    assert REGISTRY.names() == TOOL_NAMES


@pytest.mark.parametrize(
    ("name", "required"),
    [
        ("check_order_status", ["order_id"]),
        ("lookup_customer", []),
        ("search_knowledge_base", ["query"]),
        ("request_refund", ["order_id", "reason"]),
        ("escalate_to_human", ["reason"]),
        ("update_ticket", []),
    ],
)
def test_schema_shape(name: str, required: list[str]) -> None:
    schema = schema_of(name)
    assert schema["type"] == "function" and schema["function"]["name"] == name
    assert schema["function"]["description"]
    params = schema["function"]["parameters"]
    assert params["type"] == "object"
    assert params["additionalProperties"] is False
    assert "ctx" not in params["properties"]
    assert params.get("required", []) == required
    text = json.dumps(schema)
    assert '"title"' not in text and "$defs" not in text and "$ref" not in text


def test_check_order_status_schema_is_exactly_this() -> None:
    assert schema_of("check_order_status") == {
        "type": "function",
        "function": {
            "name": "check_order_status",
            "description": "Retrieve the current status of a customer order: carrier, tracking, ETA, items "
            "and whether it is late.",
            "parameters": {
                "type": "object",
                "properties": {
                    "order_id": {
                        "type": "string",
                        "description": "Order number, with or without '#', e.g. 48291",
                        "minLength": 1,
                        "maxLength": 40,
                    }
                },
                "required": ["order_id"],
                "additionalProperties": False,
            },
        },
    }


def test_escalate_to_human_schema_is_exactly_this() -> None:
    assert schema_of("escalate_to_human") == {
        "type": "function",
        "function": {
            "name": "escalate_to_human",
            "description": "Hand off the conversation to a human agent.",
            "parameters": {
                "type": "object",
                "properties": {
                    "reason": {
                        "type": "string",
                        "description": "Why a human is needed",
                        "minLength": 3,
                        "maxLength": 500,
                    },
                    "priority": {
                        "type": "string",
                        "enum": ["low", "normal", "high", "urgent"],
                        "default": "normal",
                        "description": "How urgently a human should pick this up",
                    },
                },
                "required": ["reason"],
                "additionalProperties": False,
            },
        },
    }


def test_optional_fields_are_nullable_without_anyof() -> None:
    props = schema_of("update_ticket")["function"]["parameters"]["properties"]
    assert props["frustration"] == {
        "type": ["integer", "null"],
        "minimum": 0,
        "maximum": 3,
        "default": None,
        "description": "0 calm … 3 very frustrated",
    }
    assert props["sentiment"]["enum"] == ["positive", "neutral", "negative", None]
    assert props["next_steps"]["items"] == {"type": "string"}


def test_schemas_returns_copies_and_rejects_unknown_names() -> None:
    REGISTRY.schemas()[0]["function"]["name"] = "mutated"
    assert REGISTRY.schemas()[0]["function"]["name"] == "check_order_status"
    with pytest.raises(ValueError, match="unknown tools"):
        REGISTRY.schemas(["nope"])


def test_registering_requires_docstring_and_ctx() -> None:
    registry = ToolRegistry()

    def undocumented(ctx: ToolContext, x: int) -> int:
        return x

    def no_ctx(x: int) -> int:
        """Add nothing."""
        return x

    with pytest.raises(TypeError, match="docstring"):
        registry.tool(undocumented)
    with pytest.raises(TypeError, match="ctx: ToolContext"):
        registry.tool(no_ctx)
    assert registry.names() == []


# --- run: every failure becomes a result ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "arguments", "field"),
    [
        ("check_order_status", {}, "order_id: Field required"),
        ("check_order_status", {"order_id": "48291", "extra": 1}, "extra: Extra inputs are not permitted"),
        ("search_knowledge_base", {"query": "refund", "top_k": 50}, "top_k: Input should be less than or equal to 10"),
        ("escalate_to_human", {"reason": "help me", "priority": "asap"}, "priority: Input should be"),
        ("update_ticket", {"frustration": 7}, "frustration: Input should be less than or equal to 3"),
        ("update_ticket", {"category": "shoes"}, "category: Input should be"),
    ],
)
def test_validation_errors_name_the_field(ctx: ToolContext, name: str, arguments: dict, field: str) -> None:
    result = call(name, arguments, ctx)
    assert not result.ok and result.result is None
    assert result.error.startswith(f"Invalid arguments for {name}: ")
    assert field in result.error
    assert result.arguments == arguments
    assert json.loads(result.content()) == {"error": result.error}


@pytest.mark.parametrize("raw", ["{bad json", '{"order_id": "48291"', "not json"])
def test_malformed_json_is_an_error_result(ctx: ToolContext, raw: str) -> None:
    result = call("check_order_status", raw, ctx)
    assert not result.ok
    assert "not valid JSON" in result.error
    assert result.arguments == raw  # kept raw when it could not be parsed


def test_non_object_json_is_an_error_result(ctx: ToolContext) -> None:
    result = call("check_order_status", "[1, 2]", ctx)
    assert not result.ok and "must be a JSON object" in result.error


def test_unknown_tool_lists_the_known_ones(ctx: ToolContext) -> None:
    result = call("cancel_order", {"order_id": "1"}, ctx)
    assert not result.ok
    assert "Unknown tool 'cancel_order'" in result.error
    assert all(name in result.error for name in TOOL_NAMES)


def test_unexpected_exception_and_tool_error_and_async_tools(ctx: ToolContext) -> None:
    registry = ToolRegistry()

    @registry.tool
    def explode(ctx: ToolContext, n: Annotated[int, Field(ge=0)]) -> int:
        """Divide by n."""
        return 10 // n

    @registry.tool
    def refuse(ctx: ToolContext) -> None:
        """Always refuse."""
        raise ToolError("Nope, try check_order_status instead")

    @registry.tool
    async def doubled(ctx: ToolContext, n: int) -> dict[str, int]:
        """Double n asynchronously."""
        await asyncio.sleep(0)
        return {"n": n * 2}

    crashed = call("explode", {"n": 0}, ctx, registry)
    assert not crashed.ok
    assert "explode failed internally" in crashed.error and "ZeroDivisionError" in crashed.error
    assert crashed.duration_ms >= 0
    assert call("explode", {"n": 5}, ctx, registry).result == 2

    refused = call("refuse", "", ctx, registry)  # empty arguments mean "no arguments"
    assert not refused.ok and refused.error == "Nope, try check_order_status instead"

    ok = call("doubled", {"n": 21}, ctx, registry)
    assert ok.ok and ok.error is None and ok.content() == '{"n": 42}'
    assert registry.names() == ["explode", "refuse", "doubled"]


def test_cancellation_propagates(ctx: ToolContext) -> None:
    registry = ToolRegistry()

    @registry.tool
    async def cancelled(ctx: ToolContext) -> None:
        """Get cancelled."""
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        call("cancelled", {}, ctx, registry)


# --- the support tools ------------------------------------------------------------------------------------


@pytest.mark.parametrize("order_id", ["#48291", "48291", 48291])
def test_check_order_status_article_order_is_late(ctx: ToolContext, order_id: Any) -> None:
    result = call("check_order_status", {"order_id": order_id}, ctx)
    assert result.ok, result.error
    status = result.result
    assert status["order_id"] == "48291" and status["status"] == "delayed"
    assert status["is_late"] is True and status["days_late"] == 1
    assert status["carrier"] and status["tracking_number"] and status["items"]
    # The order names its customer (assets/demo: 48291 is C1001's), so the ticket can too.
    assert (status["customer_id"], status["customer_email"]) == ("C1001", "maya.thompson@example.com")


def test_check_order_status_on_time_and_unknown(ctx: ToolContext) -> None:
    delivered = call("check_order_status", {"order_id": "48289"}, ctx).result
    assert delivered["status"] == "delivered" and delivered["is_late"] is False
    due_today = call("check_order_status", {"order_id": "48293"}, ctx).result
    assert due_today["status"] == "shipped" and due_today["is_late"] is False
    missing = call("check_order_status", {"order_id": "#123"}, ctx)
    assert not missing.ok
    assert missing.error == "No order #123 found; check the number on the confirmation email"


def test_lookup_customer(ctx: ToolContext) -> None:
    found = call("lookup_customer", {"email": "Maya.Thompson@example.com"}, ctx)
    assert found.ok and found.result["customer"]["id"] == "C1001"
    assert found.result["recent_orders"][0]["id"] == "48291"
    by_id = call("lookup_customer", {"customer_id": "C1007"}, ctx)
    assert by_id.result["customer"]["language"] == "de"
    neither = call("lookup_customer", {}, ctx)
    assert not neither.ok and "email or customer_id" in neither.error
    unknown = call("lookup_customer", {"email": "ghost@example.com"}, ctx)
    assert not unknown.ok and "ghost@example.com" in unknown.error


def test_search_knowledge_base(ctx: ToolContext) -> None:
    result = call("search_knowledge_base", {"query": "how do I get my money back?", "top_k": 2}, ctx)
    assert result.ok and len(result.result["results"]) == 2
    assert result.result["results"][0]["category"] == "refunds"
    nothing = call("search_knowledge_base", {"query": "?!?"}, ctx)
    assert nothing.ok and nothing.result["results"] == [] and "hint" in nothing.result


@pytest.mark.parametrize(
    ("order_id", "outcome", "phrase"),
    [
        ("48252", "approved", "within the 30-day refund window"),  # delivered exactly 30 days ago
        ("48256", "approved", "within the 30-day refund window"),
        ("48250", "denied", "outside the 30-day refund window"),  # delivered 33 days ago
        ("48258", "approved", "treated as lost"),  # 20 days past ETA
        ("48291", "denied", "still in transit"),  # 1 day past ETA: not lost yet
        ("48299", "denied", "still in transit"),  # shipped, on time
        ("48303", "denied", "Offer cancellation instead"),  # processing
        ("48226", "denied", "was cancelled"),
        ("48215", "denied", "already refunded"),
    ],
)
def test_refund_policy_branches(ctx: ToolContext, order_id: str, outcome: str, phrase: str) -> None:
    before = ctx.store.get_order(order_id)
    result = call("request_refund", {"order_id": f"#{order_id}", "reason": "customer asked"}, ctx)
    assert result.ok, result.error
    assert result.result["outcome"] == outcome
    assert phrase in result.result["explanation"]
    assert result.result["amount"] == (before["total"] if outcome == "approved" else 0.0)
    recorded = ctx.store.store.execute(
        "SELECT outcome, reason FROM refunds WHERE sandbox = ? AND order_id = ?", (ctx.store.key, order_id)
    )
    assert [(r["outcome"], r["reason"]) for r in recorded] == [(outcome, "customer asked")]
    after = ctx.store.get_order(order_id)["status"]
    assert after == ("refunded" if outcome == "approved" else before["status"])


def test_in_transit_denial_says_when_it_becomes_refundable(ctx: ToolContext, today: date) -> None:
    result = call("request_refund", {"order_id": "48291", "reason": "late"}, ctx).result
    assert "2025-03-20" in result["explanation"]  # ETA 2025-03-13 + 7 days


def test_second_refund_of_the_same_order_is_denied(ctx: ToolContext) -> None:
    first = call("request_refund", {"order_id": "48256", "reason": "broken"}, ctx)
    second = call("request_refund", {"order_id": "48256", "reason": "broken"}, ctx)
    assert (first.result["outcome"], second.result["outcome"]) == ("approved", "denied")
    assert "already refunded" in second.result["explanation"]
    assert second.result["policy"]["rule"] == "already_refunded" and first.result["policy"]["rule"] == "in_window"
    assert first.result["customer_id"] == ctx.store.get_order("48256")["customer_id"]


def test_refund_of_unknown_order(ctx: ToolContext) -> None:
    result = call("request_refund", {"order_id": "1", "reason": "where"}, ctx)
    assert not result.ok and result.error.startswith("No order #1 found")


def test_refund_decision_follows_the_policy_file_values(store: Store, today: date) -> None:
    order = store.get_order("48256")  # delivered 26 days ago
    assert refund_decision(order, store.policy, today)[0] == "approved"
    strict = store.policy.model_copy(update={"refund_window_days": 10})
    assert isinstance(strict, Policy)
    outcome, amount, explanation, basis = refund_decision(order, strict, today)
    assert (outcome, amount) == ("denied", 0.0) and "10-day" in explanation
    # The rule and its numbers, for an answer in another language: 26 days against the 10-day window.
    assert basis == {
        "rule": "outside_window",
        "delivered_on": order["delivered_on"],
        "age_days": 26,
        "window_days": 10,
        "warranty_months": store.policy.warranty_months,
    }
    lenient = store.policy.model_copy(update={"lost_parcel_days_after_eta": 1})
    assert refund_decision(store.get_order("48291"), lenient, today)[0] == "approved"


def test_escalation_tickets_and_queue(ctx: ToolContext) -> None:
    ctx.transcript = "customer: Where is my order #48291? It was supposed to arrive yesterday."
    ctx.ticket_fields["sentiment"] = "negative"
    first = call("escalate_to_human", {"reason": "customer is worried about a late order", "priority": "high"}, ctx)
    second = call("escalate_to_human", {"reason": "second issue"}, ctx)
    assert first.ok and second.ok
    assert first.result["ticket_id"].startswith("ESC-") and first.result["ticket_id"] != second.result["ticket_id"]
    assert (first.result["queue_position"], second.result["queue_position"]) == (1, 2)
    assert (first.result["priority"], second.result["priority"]) == ("high", "normal")
    stored = ctx.store.store.execute("SELECT * FROM escalations WHERE ticket_id = ?", (first.result["ticket_id"],))[0]
    assert stored["conversation_id"] == "conv-1"
    assert "customer is worried about a late order" in stored["summary"]
    assert "#48291" in stored["summary"] and '"sentiment": "negative"' in stored["summary"]


def test_update_ticket_merges_and_keeps_sessions_apart(store: Store) -> None:
    a, b = ToolContext(store=store.sandbox("a")), ToolContext(store=store.sandbox("b"))
    call("update_ticket", {"category": "order_status", "frustration": 2, "language": "en"}, a)
    merged = call("update_ticket", {"frustration": 3, "next_steps": ["chase carrier"], "sentiment": None}, a)
    assert merged.ok
    assert merged.result == {
        "ticket": {
            "category": "order_status",
            "frustration": 3,
            "language": "en",
            "next_steps": ["chase carrier"],
        }
    }
    assert a.ticket_fields == merged.result["ticket"]
    assert b.ticket_fields == {}  # the registry holds no session data
