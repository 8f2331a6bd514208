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
    id: str | None = Field(None, description="Customer id from lookup_customer or the order, e.g. C1001")
    email: str | None = Field(None, description="Customer email address")


class Action(BaseModel):
    """One tool call the agent made for the customer."""

    model_config = ConfigDict(extra="forbid")
    tool: str = Field(description="Tool name, e.g. check_order_status")
    ok: bool = Field(description="Whether the tool succeeded")
    outcome: str = Field(description="One sentence: what the tool found or did")


class Ticket(BaseModel):
    """A support ticket; the field names are a public promise (/session returns them)."""

    model_config = ConfigDict(extra="forbid")
    ticket_id: str = Field(description="Ticket id, e.g. TCK-1A2B3C4D")
    customer: Customer | None = Field(description="The customer (looked up, or the order's owner), when known")
    order_ids: list[str] = Field(description="Order numbers mentioned or looked up, digits only")
    category: Category = Field(description="What the request is about")
    intent_summary: str = Field(description="One sentence: what the customer wants")
    sentiment: Sentiment = Field(description="The customer's overall tone")
    frustration: Literal[0, 1, 2, 3] = Field(description="0 none, 1 mild, 2 clear, 3 high")
    priority: Priority = Field(description="How soon a person should look at it")
    language: str = Field(description="ISO 639-1 code of the customer's language, e.g. en")
    actions_taken: list[Action] = Field(description="Tool calls made for the customer, in order (not update_ticket)")
    status: Status = Field(
        description="open until something is decided; pending_customer while waiting on the customer (a question "
        "asked, a refund refused, a late parcel); escalated if handed to a human; resolved when the customer "
        "confirms or an action settles it"
    )
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


def _first_clause(text: Any, limit: int = 160) -> str:
    """The first sentence of a tool's explanation, bounded: an action reads as one line."""
    line = str(text or "").strip().split("\n", 1)[0]
    cut = line.find(". ")
    line = line[: cut + 1] if 0 < cut < limit else line
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _days(n: Any) -> str:
    return f"{n} day" if str(n) == "1" else f"{n} days"


def _outcome(name: str, args: dict[str, Any], result: dict[str, Any], call: Mapping[str, Any]) -> str:
    """One sentence a person reads in the ticket: what the call found or did."""
    oid = result.get("order_id") or result.get("id") or args.get("order_id")
    if not call.get("ok", True):
        error = _first_clause(call.get("error") or "unknown error", 200)
        what = {
            "check_order_status": f"Could not check order {oid}",
            "request_refund": f"Could not request a refund for order {oid}",
            "lookup_customer": "Could not find the customer",
            "escalate_to_human": "Could not escalate to a person",
            "search_knowledge_base": "Could not search the help centre",
        }.get(name, f"{name} failed")
        return f"{what}: {error.rstrip('.')}."
    if name == "check_order_status":
        status = str(result.get("status") or "found").replace("_", " ")
        bits = [status + (f" with {result['carrier']}" if result.get("carrier") else "")]
        if result.get("is_late") and result.get("days_late"):
            bits.append(f"{_days(result['days_late'])} late")
        if result.get("delivered_on"):
            bits.append(f"delivered on {result['delivered_on']}")
        elif result.get("eta"):
            bits.append(f"expected {result['eta']}")
        return f"Checked order {oid}: {', '.join(bits)}."
    if name == "request_refund":
        state = str(result.get("outcome") or result.get("status") or "requested").lower()
        amount = result.get("amount")
        shown = f"{amount:.2f}" if isinstance(amount, int | float) else str(amount)
        money = f" ({shown} {result.get('currency') or ''}".rstrip() + ")" if amount else ""
        if state == "approved":
            return f"Refunded order {oid} in full{money}."
        reason = _first_clause(result.get("explanation"))
        verdict = "refused" if state == "denied" else state
        return f"Refund for order {oid} {verdict}" + (f": {reason}" if reason else ".")
    if name == "escalate_to_human":
        pos = result.get("queue_position")
        return f"Escalated to a person as {result.get('ticket_id')}" + (
            f" (queue position {pos})." if pos is not None else "."
        )
    if name == "lookup_customer":
        found = result.get("customer") if isinstance(result.get("customer"), dict) else result
        who = found.get("id") or found.get("customer_id") or "the customer"
        return f"Looked up customer {who}" + (f" ({found['email']})." if found.get("email") else ".")
    if name == "search_knowledge_base":
        hits = [a for a in result.get("results") or () if isinstance(a, dict)]
        if not hits:
            return "Searched the help centre: no article matched."
        titles = "; ".join(f"{a.get('id')} {a.get('title')}".strip() for a in hits[:3])
        return f"Searched the help centre: {len(hits)} article{'s' if len(hits) != 1 else ''} ({titles})."
    return f"Called {name}."


# Bookkeeping calls the agent makes for the ticket itself, not actions for the customer.
_NOT_ACTIONS = frozenset({"update_ticket"})


@dataclass
class _Facts:
    order_ids: list[str] = field(default_factory=list)
    customer: Customer | None = None
    escalation_id: str | None = None
    actions: list[Action] = field(default_factory=list)
    tool_names: list[str] = field(default_factory=list)
    # What the latest turn's calls decided: "resolved" (a refund approved), "pending" (a refund refused,
    # a late parcel), or None; with the order it concerns and why, for the next steps.
    decided: str | None = None
    decided_about: str = ""
    decided_by: str = ""


def _customer_of(name: str, args: dict[str, Any], result: dict[str, Any]) -> Customer | None:
    """Who a successful call names: the customer looked up, or the one an order belongs to."""
    if name == "lookup_customer":
        found = result.get("customer") if isinstance(result.get("customer"), dict) else result
        cid = found.get("id") or found.get("customer_id") or args.get("customer_id")
        email = found.get("email") or args.get("email")
    elif name in ("check_order_status", "request_refund"):
        cid, email = result.get("customer_id"), result.get("customer_email")
    else:
        return None
    if not (cid or email):
        return None
    return Customer(id=str(cid) if cid else None, email=str(email) if email else None)


def _decision(name: str, result: dict[str, Any]) -> str | None:
    if name == "request_refund":
        state = str(result.get("outcome") or "").lower()
        return "resolved" if state == "approved" else "pending" if state == "denied" else None
    if name == "check_order_status" and (result.get("is_late") or result.get("status") == "delayed"):
        return "pending"
    return None


def tool_facts(tool_calls: list[dict[str, Any]]) -> _Facts:
    """What the tool calls establish: orders, the customer, an escalation, the actions as sentences, and
    what the latest turn's calls decided."""
    facts = _Facts()
    last_turn = max((c.get("turn", 0) for c in tool_calls if isinstance(c.get("turn", 0), int)), default=0)
    for call in tool_calls:
        name = str(call.get("name", ""))
        args, result = _as_dict(call.get("arguments")), _as_dict(call.get("result"))
        ok = bool(call.get("ok", True))
        facts.tool_names.append(name)
        if name not in _NOT_ACTIONS:
            facts.actions.append(Action(tool=name, ok=ok, outcome=_outcome(name, args, result, call)))
        if name in ("check_order_status", "request_refund"):
            for oid in (args.get("order_id"), result.get("order_id"), result.get("id") if ok else None):
                if oid and str(oid).lstrip("#") not in facts.order_ids:
                    facts.order_ids.append(str(oid).lstrip("#"))
        if ok and (customer := _customer_of(name, args, result)) is not None:
            facts.customer = customer
        if name == "escalate_to_human" and ok and result.get("ticket_id"):
            facts.escalation_id = str(result["ticket_id"])
        if ok and call.get("turn", 0) == last_turn and (decided := _decision(name, result)) is not None:
            facts.decided, facts.decided_by = decided, name
            facts.decided_about = str(result.get("order_id") or args.get("order_id") or "").lstrip("#")
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
        # Every call is in the session's tool calls, so they are the whole record; an earlier ticket's list
        # is kept only when there are none (its bookkeeping entries dropped).
        "actions_taken": facts.actions
        or [a for a in (previous.actions_taken if previous else []) if a.tool not in _NOT_ACTIONS],
        "escalation_ticket_id": escalation,
    }
    if escalation:
        update["status"] = "escalated"
    return ticket.model_copy(update=update)


# ---------------------------------------------------------------- what a turn changed

_LIST_FIELDS = ("order_ids", "actions_taken", "next_steps")


def ticket_changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[dict[str, Any]]:
    """What changed from ``before`` to ``after`` (ticket dicts), field by field in the schema's order:
    ``{"field", "before", "after"}``, or for lists ``{"field", "added", "removed"}`` (only the items that differ,
    so a long conversation's action list is not copied every turn)."""
    out: list[dict[str, Any]] = []
    for name in Ticket.model_fields:
        old, new = before.get(name), after.get(name)
        if old == new or name == "ticket_id":
            continue
        if name in _LIST_FIELDS and isinstance(new, list):
            old_list = old if isinstance(old, list) else []
            old_keys = {json.dumps(x, sort_keys=True, default=str) for x in old_list}
            new_keys = {json.dumps(x, sort_keys=True, default=str) for x in new}
            added = [x for x in new if json.dumps(x, sort_keys=True, default=str) not in old_keys]
            removed = [x for x in old_list if json.dumps(x, sort_keys=True, default=str) not in new_keys]
            if added or removed:
                out.append({"field": name, "added": added, "removed": removed})
        else:
            out.append({"field": name, "before": old, "after": new})
    return out


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
    status = status_of(messages, escalated, facts.decided)
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
    order = f"order #{facts.decided_about}" if facts.decided_about else "the order"
    if status == "escalated":
        return [f"A human agent picks up {facts.escalation_id or 'the escalation'}"]
    if status == "pending_customer" and facts.decided == "pending":
        if facts.decided_by == "request_refund":
            return [f"Wait for the customer: the refund for {order} was refused under the policy"]
        return [f"Follow {order} until it is delivered, and tell the customer if it is still late"]
    if status == "pending_customer":
        return ["Wait for the customer's reply"]
    if status == "open":
        return ["Wait for the customer to confirm the answer solved it"]
    return []
