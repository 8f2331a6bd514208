"""The support tools: orders, customers, the knowledge base, refunds, escalation and the ticket.

Each is registered on ``REGISTRY`` by the ``@tool`` decorator; its schema comes from its
signature (see ``supportbot.tools.registry``). Side effects go through the injected store, which is
the conversation's sandbox, so they never reach another conversation.
"""

from __future__ import annotations

import json
from datetime import date
from typing import Annotated, Any

from pydantic import Field

from supportbot.errors import ToolError
from supportbot.storage.demo_data import Policy
from supportbot.storage.sandbox import Sandbox
from supportbot.storage.store import normalize_order_id
from supportbot.tools.registry import ToolContext, ToolRegistry
from supportbot.vocabulary import Category, Priority, Sentiment

# Keeps hand-off summaries readable for the human agent and bounded in the database.
_TRANSCRIPT_TAIL_CHARS = 2000

REGISTRY = ToolRegistry()
tool = REGISTRY.tool

OrderId = Annotated[
    str, Field(min_length=1, max_length=40, description="Order number, with or without '#', e.g. 48291")
]


def _require_order(store: Sandbox, order_id: str) -> dict[str, Any]:
    order = store.get_order(order_id)
    if order is None:
        raise ToolError(f"No order #{normalize_order_id(order_id)} found; check the number on the confirmation email")
    return order


def days_late(order: dict[str, Any], today: date) -> int:
    """Days an undelivered order is past its ETA (0 when on time, delivered or closed)."""
    if order["status"] in ("delivered", "cancelled", "refunded") or not order.get("eta"):
        return 0
    return max(0, (today - date.fromisoformat(order["eta"])).days)


@tool
def check_order_status(ctx: ToolContext, order_id: OrderId) -> dict[str, Any]:
    """Retrieve the current status of a customer order: carrier, tracking, ETA, items and whether it is late."""
    order = _require_order(ctx.store, order_id)
    late = days_late(order, ctx.store.today)
    keys = (
        "status",
        "status_detail",
        "ordered_on",
        "shipped_on",
        "carrier",
        "tracking_number",
        "eta",
        "delivered_on",
        "cancelled_on",
        "refunded_on",
        "items",
        "total",
        "currency",
    )
    return {
        "order_id": order["id"],
        **{k: order[k] for k in keys},
        "is_late": late > 0,
        "days_late": late,
        **_owner(ctx.store, order),
    }


@tool
def lookup_customer(
    ctx: ToolContext,
    email: Annotated[str | None, Field(max_length=254, description="Email address on the account")] = None,
    customer_id: Annotated[str | None, Field(max_length=20, description="Customer id, e.g. C1001")] = None,
) -> dict[str, Any]:
    """Find a customer by email or customer id, with their most recent orders."""
    if not email and not customer_id:
        # Not expressible in a flat OpenAI schema, so checked here with a validation-style message.
        raise ToolError("Invalid arguments for lookup_customer: email or customer_id: provide one of the two")
    customer = ctx.store.get_customer(email=email or None, customer_id=customer_id or None)
    if customer is None:
        which = f"email {email}" if email else f"id {customer_id}"
        raise ToolError(f"No customer found with {which}; check the spelling or ask for an order number instead")
    recent = [
        {k: o[k] for k in ("id", "status", "ordered_on", "eta", "total", "currency")}
        for o in ctx.store.orders_for_customer(customer["id"], limit=5)
    ]
    return {"customer": customer, "recent_orders": recent}


@tool
def search_knowledge_base(
    ctx: ToolContext,
    query: Annotated[str, Field(min_length=1, max_length=500, description="What the customer needs, in a few words")],
    top_k: Annotated[int, Field(ge=1, le=10, description="How many articles to return")] = 3,
) -> dict[str, Any]:
    """Search help articles (shipping, returns, refunds, warranty, account, payments, privacy, troubleshooting)."""
    results = ctx.store.search_kb(query, top_k=top_k)
    if not results:
        return {"results": [], "hint": "No article matched; try different keywords or escalate to a human."}
    return {"results": results}


def _days(n: int) -> str:
    return f"{n} day" if n == 1 else f"{n} days"


def refund_decision(order: dict[str, Any], policy: Policy, today: date) -> tuple[str, float, str, dict[str, Any]]:
    """Apply the refund policy to an order: ``(outcome, amount, explanation, basis)``.

    ``basis`` names the policy rule that decided (``rule``) and the dates and counts it used, so an
    answer in another language can say the same thing without parsing the English explanation."""
    oid, status, total = order["id"], order["status"], order["total"]
    if status == "refunded":
        basis = {"rule": "already_refunded", "refunded_on": order["refunded_on"]}
        return "denied", 0.0, f"Order #{oid} was already refunded on {order['refunded_on']}.", basis
    if status == "cancelled":
        basis = {"rule": "cancelled", "cancelled_on": order["cancelled_on"]}
        return (
            "denied",
            0.0,
            (
                f"Order #{oid} was cancelled on {order['cancelled_on']} and never charged; "
                "any pending authorisation drops off within a few days."
            ),
            basis,
        )
    if status == "processing":
        return (
            "denied",
            0.0,
            (
                f"Order #{oid} has not shipped yet, so there is nothing to refund. "
                "Offer cancellation instead (under Orders, or via a human agent): it releases the payment in full."
            ),
            {"rule": "not_shipped"},
        )
    if status in ("shipped", "delayed"):
        late = days_late(order, today)
        if late >= policy.lost_parcel_days_after_eta:
            return (
                "approved",
                total,
                (
                    f"Order #{oid} is {_days(late)} past its ETA ({order['eta']}) and is treated "
                    f"as lost; refunded in full, {policy.refund_processing}."
                ),
                {"rule": "lost", "days_late": late, "eta": order["eta"]},
            )
        eligible = date.fromordinal(
            date.fromisoformat(order["eta"]).toordinal() + policy.lost_parcel_days_after_eta
        ).isoformat()
        return (
            "denied",
            0.0,
            (
                f"Order #{oid} is still in transit (ETA {order['eta']}"
                f"{f', {_days(late)} late' if late else ''}). If it has not arrived by "
                f"{eligible} it counts as lost and is refunded in full; "
                "once delivered it can be returned within the return window."
            ),
            {"rule": "in_transit", "days_late": late, "eta": order["eta"], "eligible_on": eligible},
        )
    start = order.get("delivered_on") or order["ordered_on"]
    age = (today - date.fromisoformat(start)).days
    window = policy.refund_window_days
    if age <= window:
        return (
            "approved",
            total,
            (
                f"Order #{oid} was delivered {_days(age)} ago, within the {window}-day refund "
                f"window; refunded in full, {policy.refund_processing}."
            ),
            {"rule": "in_window", "age_days": age, "window_days": window},
        )
    return (
        "denied",
        0.0,
        (
            f"Order #{oid} was delivered on {start}, {_days(age)} ago, outside the {window}-day refund "
            f"window. If an item is faulty, the {policy.warranty_months}-month warranty still covers it."
        ),
        {
            "rule": "outside_window",
            "delivered_on": start,
            "age_days": age,
            "window_days": window,
            "warranty_months": policy.warranty_months,
        },
    )


def _owner(store: Sandbox, order: dict[str, Any]) -> dict[str, Any]:
    """The order's customer, as the ticket names them: id and email."""
    customer = store.get_customer(customer_id=order["customer_id"]) if order.get("customer_id") else None
    return {"customer_id": order.get("customer_id"), "customer_email": customer["email"] if customer else None}


@tool
def request_refund(
    ctx: ToolContext,
    order_id: OrderId,
    reason: Annotated[str, Field(min_length=3, max_length=500, description="Why the customer wants a refund")],
) -> dict[str, Any]:
    """Request a refund for an order; the refund policy decides and the outcome is recorded."""
    store = ctx.store
    # One transaction: two concurrent requests must not both approve the same order.
    with store.transaction():
        order = _require_order(store, order_id)
        outcome, amount, explanation, basis = refund_decision(order, store.policy, store.today)
        record = store.record_refund(
            order["id"], reason=reason, outcome=outcome, amount=amount, explanation=explanation
        )
    result = {k: record[k] for k in ("refund_id", "order_id", "outcome", "amount", "currency", "explanation")}
    return result | {"policy": basis, **_owner(store, order)}


@tool
def escalate_to_human(
    ctx: ToolContext,
    reason: Annotated[str, Field(min_length=3, max_length=500, description="Why a human is needed")],
    priority: Annotated[Priority, Field(description="How urgently a human should pick this up")] = "normal",
) -> dict[str, Any]:
    """Hand off the conversation to a human agent."""
    lines = [f"Reason: {reason}", f"Priority: {priority}"]
    if ctx.ticket_fields:
        lines.append("Ticket: " + json.dumps(ctx.ticket_fields, ensure_ascii=False, sort_keys=True))
    transcript = ctx.transcript.strip()
    if transcript:
        tail = transcript[-_TRANSCRIPT_TAIL_CHARS:]
        lines += ["Conversation so far:", ("…" if len(tail) < len(transcript) else "") + tail]
    ticket = ctx.store.create_escalation(reason, priority, "\n".join(lines), ctx.conversation_id)
    return {
        **ticket,
        "message": f"Ticket {ticket['ticket_id']} created; position {ticket['queue_position']} in the queue.",
    }


@tool
def update_ticket(
    ctx: ToolContext,
    category: Category | None = None,
    intent_summary: Annotated[
        str | None, Field(max_length=300, description="One sentence: what the customer wants")
    ] = None,
    sentiment: Sentiment | None = None,
    frustration: Annotated[int | None, Field(ge=0, le=3, description="0 calm … 3 very frustrated")] = None,
    priority: Priority | None = None,
    language: Annotated[
        str | None, Field(max_length=35, description="Customer's language, e.g. en, es, de, fr")
    ] = None,
    next_steps: Annotated[list[str] | None, Field(max_length=10, description="Follow-up actions")] = None,
) -> dict[str, Any]:
    """Record structured ticket fields for the CRM."""
    values = {
        "category": category,
        "intent_summary": intent_summary,
        "sentiment": sentiment,
        "frustration": frustration,
        "priority": priority,
        "language": language,
        "next_steps": next_steps,
    }
    ctx.ticket_fields.update({k: v for k, v in values.items() if v is not None})
    return {"ticket": dict(ctx.ticket_fields)}
