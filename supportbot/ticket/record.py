"""The structured support ticket: its schema, and building it inline from what happened.

Inline building makes no request: tool facts, the ``update_ticket`` tool's fields and
deterministic heuristics over the transcript (``supportbot.ticket.rules``). Precedence: tool
facts win over model-set fields, which win over heuristics. Extraction by the model fills
the same :class:`Ticket` (``supportbot.ticket.extraction``).
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from supportbot.ticket.rules import (
    category_of,
    frustration_of,
    priority_of,
    sentiment_of,
    status_of,
    summary_of,
    user_texts,
)
from supportbot.vocabulary import Category, Priority, Sentiment, Status, detect_language, find_emails, find_order_ids


class Customer(BaseModel):
    """Who the ticket is about, as far as we know."""

    model_config = ConfigDict(extra="forbid")
    id: str | None = Field(None, description="Customer id from lookup_customer, e.g. C1001")
    email: str | None = Field(None, description="Customer email address")


class Action(BaseModel):
    """One tool call the agent made for the customer."""

    model_config = ConfigDict(extra="forbid")
    tool: str = Field(description="Tool name, e.g. check_order_status")
    ok: bool = Field(description="Whether the tool succeeded")
    outcome: str = Field(description="One line: what the tool found or did")


class Ticket(BaseModel):
    """A support ticket; the field names are a public promise (/session returns them)."""

    model_config = ConfigDict(extra="forbid")
    ticket_id: str = Field(description="Ticket id, e.g. TCK-1A2B3C4D")
    customer: Customer | None = Field(description="The customer, when known")
    order_ids: list[str] = Field(description="Order numbers mentioned or looked up, digits only")
    category: Category = Field(description="What the request is about")
    intent_summary: str = Field(description="One sentence: what the customer wants")
    sentiment: Sentiment = Field(description="The customer's overall tone")
    frustration: Literal[0, 1, 2, 3] = Field(description="0 none, 1 mild, 2 clear, 3 high")
    priority: Priority = Field(description="How soon a person should look at it")
    language: str = Field(description="ISO 639-1 code of the customer's language, e.g. en")
    actions_taken: list[Action] = Field(description="Tool calls made, in order")
    status: Status = Field(description="escalated if handed to a human; pending_customer if we asked a question")
    escalation_ticket_id: str | None = Field(description="Id returned by escalate_to_human, e.g. ESC-1A2B3C")
    next_steps: list[str] = Field(description="What happens next, short imperative items")


# ---------------------------------------------------------------- schema


def _inline_refs(node: Any, defs: Mapping[str, Any]) -> Any:
    if isinstance(node, dict):
        if "$ref" in node:
            target = copy.deepcopy(defs[node["$ref"].rsplit("/", 1)[-1]])
            extra = {k: v for k, v in node.items() if k != "$ref"}
            return _inline_refs(target | extra, defs)
        return {k: _inline_refs(v, defs) for k, v in node.items()}
    if isinstance(node, list):
        return [_inline_refs(v, defs) for v in node]
    return node


def _strictify(node: Any) -> Any:
    if isinstance(node, dict):
        out = {k: _strictify(v) for k, v in node.items() if k not in ("title", "default")}
        if out.get("type") == "object" and "properties" in out:
            out["required"] = list(out["properties"])  # strict mode: every property required
            out["additionalProperties"] = False
        return out
    if isinstance(node, list):
        return [_strictify(v) for v in node]
    return node


def ticket_json_schema() -> dict[str, Any]:
    """A strict-mode JSON schema generated from :class:`Ticket` (refs inlined, no titles/defaults)."""
    raw = Ticket.model_json_schema()
    defs = raw.pop("$defs", {})
    # Inlined rather than $ref: some OpenAI-compatible servers mishandle $defs, and the
    # JSON-mode fallback prompt is easier for a model to follow without indirection.
    return _strictify(_inline_refs(raw, defs))


def ticket_id_for(conversation_id: str) -> str:
    """Stable ticket id for a conversation; a hash, so it never leaks the (secret) conversation id."""
    return "TCK-" + hashlib.sha256(conversation_id.encode()).hexdigest()[:8].upper()


# ---------------------------------------------------------------- tool facts


def _as_dict(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except ValueError:
            return {}
        return parsed if isinstance(parsed, dict) else {}
    return {}


def _outcome(name: str, args: dict[str, Any], result: dict[str, Any], call: Mapping[str, Any]) -> str:
    if not call.get("ok", True):
        return f"failed: {call.get('error') or 'unknown error'}".splitlines()[0][:200]
    oid = result.get("order_id") or result.get("id") or args.get("order_id")
    if name == "check_order_status":
        bits = [str(result.get(k)) for k in ("status", "carrier") if result.get(k)]
        return f"order {oid}: {', '.join(bits) or 'found'}"
    if name == "request_refund":
        state = result.get("outcome") or result.get("status") or "requested"
        amount = result.get("amount")
        return f"refund for order {oid}: {state}" + (
            f" ({amount} {result.get('currency', '')})".rstrip() if amount else ""
        )
    if name == "escalate_to_human":
        pos = result.get("queue_position")
        return f"escalated as {result.get('ticket_id')}" + (f" (queue position {pos})" if pos is not None else "")
    if name == "lookup_customer":
        found = result.get("customer") if isinstance(result.get("customer"), dict) else result
        return f"customer {found.get('id') or found.get('customer_id') or 'found'}"
    summary = json.dumps(result or call.get("result"), ensure_ascii=False, default=str)
    return summary if len(summary) <= 160 else summary[:159] + "…"


@dataclass
class _Facts:
    order_ids: list[str] = field(default_factory=list)
    customer: Customer | None = None
    escalation_id: str | None = None
    actions: list[Action] = field(default_factory=list)
    tool_names: list[str] = field(default_factory=list)


def tool_facts(tool_calls: list[dict[str, Any]]) -> _Facts:
    facts = _Facts()
    for call in tool_calls:
        name = str(call.get("name", ""))
        args, result = _as_dict(call.get("arguments")), _as_dict(call.get("result"))
        facts.tool_names.append(name)
        facts.actions.append(
            Action(tool=name, ok=bool(call.get("ok", True)), outcome=_outcome(name, args, result, call))
        )
        if name in ("check_order_status", "request_refund"):
            for oid in (
                args.get("order_id"),
                result.get("order_id"),
                result.get("id") if call.get("ok", True) else None,
            ):
                if oid and str(oid).lstrip("#") not in facts.order_ids:
                    facts.order_ids.append(str(oid).lstrip("#"))
        if name == "lookup_customer" and call.get("ok", True):
            found = result.get("customer") if isinstance(result.get("customer"), dict) else result
            cid = found.get("id") or found.get("customer_id") or args.get("customer_id")
            email = found.get("email") or args.get("email")
            if cid or email:
                facts.customer = Customer(id=str(cid) if cid else None, email=str(email) if email else None)
        if name == "escalate_to_human" and call.get("ok", True) and result.get("ticket_id"):
            facts.escalation_id = str(result["ticket_id"])
    return facts


def _merge_unique(*lists: list[Any]) -> list[Any]:
    """The items of every list in order, each once. Compared by a hashable key (a model by its JSON):
    a membership test on the growing list was quadratic in the ids a conversation names."""
    seen: dict[Any, Any] = {}
    for items in lists:
        for x in items:
            seen.setdefault(x.model_dump_json() if isinstance(x, BaseModel) else x, x)
    return list(seen.values())


def apply_facts(ticket: Ticket, facts: _Facts, conversation_id: str, previous: Ticket | None) -> Ticket:
    """Tool facts overwrite whatever the model or the heuristics said."""
    prev_orders = previous.order_ids if previous else []
    escalation = facts.escalation_id or (previous.escalation_ticket_id if previous else None) or None
    known = [c for c in (facts.customer, ticket.customer, previous.customer if previous else None) if c]
    cid = next((c.id for c in known if c.id), None)
    email = next((c.email for c in known if c.email), None)
    customer = Customer(id=cid, email=email) if (cid or email) else None
    update: dict[str, Any] = {
        "ticket_id": previous.ticket_id if previous else ticket_id_for(conversation_id),
        "order_ids": _merge_unique(prev_orders, facts.order_ids, [o.lstrip("#") for o in ticket.order_ids]),
        "customer": customer,
        "actions_taken": _merge_unique(previous.actions_taken if previous else [], facts.actions),
        "escalation_ticket_id": escalation,
    }
    if escalation:
        update["status"] = "escalated"
    return ticket.model_copy(update=update)


# ---------------------------------------------------------------- inline mode

_MODEL_FIELDS = ("category", "intent_summary", "sentiment", "frustration", "priority", "language", "next_steps")


def build_inline(
    *,
    conversation_id: str,
    messages: list[dict[str, Any]],
    tool_calls: list[dict[str, Any]],
    ticket_fields: dict[str, Any],
    previous: Ticket | None = None,
) -> Ticket:
    """Build the ticket without a request: tool facts > update_ticket fields > heuristics."""
    facts = tool_facts(tool_calls)
    users = user_texts(messages)
    all_user = "\n".join(users)
    order_ids = _merge_unique(facts.order_ids, *(find_order_ids(text) for text in users))
    emails = [email for text in users for email in find_emails(text)]
    frustration = frustration_of(messages)
    category = category_of(users, facts.tool_names)
    escalated = facts.escalation_id is not None or bool(previous and previous.escalation_ticket_id)
    status = status_of(messages, escalated)
    heur: dict[str, Any] = {
        "ticket_id": ticket_id_for(conversation_id),
        "customer": Customer(id=None, email=emails[-1]) if emails else None,
        "order_ids": order_ids,
        "category": category,
        "intent_summary": summary_of(category, order_ids, users),
        "sentiment": sentiment_of(messages, frustration),
        "frustration": frustration,
        "priority": priority_of(frustration, category, escalated, users),
        "language": detect_language(all_user) if all_user.strip() else (previous.language if previous else "en"),
        "actions_taken": [],
        "status": status,
        "escalation_ticket_id": None,
        "next_steps": _next_steps(status, facts),
    }
    ticket = Ticket.model_validate(heur)
    for name in _MODEL_FIELDS:  # one at a time: a bad value from the model drops only itself
        if name in ticket_fields and ticket_fields[name] is not None:
            try:
                ticket = Ticket.model_validate(ticket.model_dump() | {name: ticket_fields[name]})
            except ValidationError:
                continue
    return apply_facts(ticket, facts, conversation_id, previous)


def _next_steps(status: str, facts: _Facts) -> list[str]:
    if status == "escalated":
        return [f"A human agent picks up {facts.escalation_id or 'the escalation'}"]
    if status == "pending_customer":
        return ["Wait for the customer's reply"]
    return []
