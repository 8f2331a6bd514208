"""The support tools and their registry.

A tool is a plain typed function whose first parameter is the injected
``ctx: ToolContext``; its JSON schema (OpenAI tools format) is built by pydantic from
the remaining parameters, and its description is the docstring's first line.
``ToolRegistry.run`` never raises for a bad call: malformed JSON, invalid arguments,
unknown tools, ``ToolError`` and crashes all become ``ok=False`` results the model
can act on. Only cancellation and ``KeyboardInterrupt`` propagate.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date
from typing import Annotated, Any, Literal, TypeVar, get_type_hints

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from supportbot.errors import ToolError
from supportbot.store import Policy, Store, normalize_order_id

F = TypeVar("F", bound=Callable[..., Any])
Priority = Literal["low", "normal", "high", "urgent"]
# Keeps hand-off summaries readable for the human agent and bounded in the database.
_TRANSCRIPT_TAIL_CHARS = 2000


@dataclass
class ToolContext:
    """Per-conversation state injected into every tool call; never part of a schema."""

    store: Store
    conversation_id: str | None = None
    transcript: str = ""  # short plain-text summary of the conversation so far, for hand-offs
    ticket_fields: dict[str, Any] = field(default_factory=dict)  # filled by update_ticket


@dataclass(frozen=True)
class ToolResult:
    """The outcome of one tool call, successful or not."""

    call_id: str
    name: str
    arguments: dict[str, Any] | str  # dict when parsed, the raw string when not
    ok: bool
    result: Any
    error: str | None
    duration_ms: float

    def content(self) -> str:
        """The JSON text sent back to the model as the tool message."""
        payload = self.result if self.ok else {"error": self.error}
        return json.dumps(payload, ensure_ascii=False, default=str)


@dataclass(frozen=True)
class _Tool:
    name: str
    description: str
    fn: Callable[..., Any]
    params: type[BaseModel]
    schema: dict[str, Any]


def _tidy(node: Any, *, in_properties: bool = False) -> Any:
    """Drop pydantic's ``title`` noise and fold ``anyOf [X, null]`` into ``type: [X, "null"]``."""
    if isinstance(node, list):
        return [_tidy(n) for n in node]
    if not isinstance(node, dict):
        return node
    if in_properties:  # keys here are argument names, which may legitimately be "title"
        return {k: _tidy(v) for k, v in node.items()}
    out = {k: _tidy(v, in_properties=(k == "properties")) for k, v in node.items() if k != "title"}
    options = out.get("anyOf")
    if isinstance(options, list) and len(options) == 2 and {"type": "null"} in options:
        other = next(o for o in options if o != {"type": "null"})
        if isinstance(other.get("type"), str):
            del out["anyOf"]
            merged = {**other, "type": [other["type"], "null"]}
            if "enum" in merged:
                merged["enum"] = [*merged["enum"], None]
            out = {**merged, **out}
    return out


def _build(fn: Callable[..., Any]) -> _Tool:
    doc = inspect.getdoc(fn)
    if not doc:
        raise TypeError(f"tool {fn.__name__} needs a one-line docstring: it becomes the description")
    hints = get_type_hints(fn, include_extras=True)
    params = list(inspect.signature(fn).parameters.values())
    if not params or params[0].name != "ctx" or hints.get("ctx") is not ToolContext:
        raise TypeError(f"tool {fn.__name__} must take `ctx: ToolContext` as its first parameter")
    fields: dict[str, Any] = {}
    for p in params[1:]:
        if p.kind not in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) or p.name not in hints:
            raise TypeError(f"tool {fn.__name__}: parameter {p.name} needs a type hint and a plain name")
        fields[p.name] = (hints[p.name], ... if p.default is p.empty else p.default)
    # Models often send 48291 for an id typed as a string; accept it instead of failing the call.
    config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)
    model = create_model(f"{fn.__name__}_args", __config__=config, **fields)
    parameters = _tidy(model.model_json_schema())
    parameters.setdefault("properties", {})
    parameters["additionalProperties"] = False
    description = doc.strip().splitlines()[0]
    schema = {"type": "function", "function": {"name": fn.__name__, "description": description, "parameters": parameters}}
    return _Tool(fn.__name__, description, fn, model, schema)


def _describe(error: ValidationError) -> str:
    parts = []
    for err in error.errors():
        where = ".".join(str(p) for p in err["loc"]) or "arguments"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


class ToolRegistry:
    """Named tools with schemas derived from their signatures."""

    def __init__(self) -> None:
        self._tools: dict[str, _Tool] = {}

    def tool(self, fn: F) -> F:
        """Register ``fn`` as a tool under its own name; returns it unchanged."""
        built = _build(fn)
        if built.name in self._tools:
            raise ValueError(f"a tool named {built.name} is already registered")
        self._tools[built.name] = built
        return fn

    def names(self) -> list[str]:
        """Registered tool names, in registration order."""
        return list(self._tools)

    def schemas(self, names: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """OpenAI ``tools=`` entries for ``names`` (default: all)."""
        wanted = self.names() if names is None else list(names)
        unknown = [n for n in wanted if n not in self._tools]
        if unknown:
            raise ValueError(f"unknown tools {unknown}; known: {', '.join(self._tools)}")
        return [json.loads(json.dumps(self._tools[n].schema)) for n in wanted]  # callers get a copy

    async def run(self, call_id: str, name: str, arguments: str, ctx: ToolContext) -> ToolResult:
        """Parse, validate and run one tool call; every failure becomes an ``ok=False`` result."""
        start = time.perf_counter()
        args: dict[str, Any] | str = arguments

        def done(ok: bool, result: Any = None, error: str | None = None) -> ToolResult:
            elapsed = (time.perf_counter() - start) * 1000
            return ToolResult(call_id, name, args, ok, result, error, round(elapsed, 3))

        tool = self._tools.get(name)
        if tool is None:
            return done(False, error=f"Unknown tool {name!r}. Available tools: {', '.join(self._tools)}.")
        try:
            # Some models send "" instead of "{}" for a call without arguments.
            parsed = json.loads(arguments) if arguments and arguments.strip() else {}
        except json.JSONDecodeError as exc:
            return done(False, error=f"Arguments for {name} are not valid JSON ({exc.msg} at position {exc.pos}); "
                        "send a JSON object matching the tool's parameters.")
        if not isinstance(parsed, dict):
            return done(False, error=f"Arguments for {name} must be a JSON object, not {type(parsed).__name__}.")
        args = parsed
        try:
            validated = tool.params.model_validate(parsed)
        except ValidationError as exc:
            return done(False, error=f"Invalid arguments for {name}: {_describe(exc)}.")
        kwargs = {key: getattr(validated, key) for key in type(validated).model_fields}
        try:
            if inspect.iscoroutinefunction(tool.fn):
                result = await tool.fn(ctx, **kwargs)
            else:
                # Tools do blocking SQLite work; keep the event loop free.
                result = await asyncio.to_thread(tool.fn, ctx, **kwargs)
        except ToolError as exc:
            return done(False, error=str(exc))
        except Exception as exc:  # a bug in a tool must reach the model as a result, not crash the turn
            return done(False, error=f"Tool {name} failed internally ({type(exc).__name__}: {str(exc)[:200]}). "
                        "Do not retry with the same arguments; apologise and offer to escalate to a human.")
        return done(True, result=result)


REGISTRY = ToolRegistry()
tool = REGISTRY.tool

OrderId = Annotated[str, Field(min_length=1, max_length=40, description="Order number, with or without '#', e.g. 48291")]


def _require_order(store: Store, order_id: str) -> dict[str, Any]:
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
    keys = ("status", "status_detail", "ordered_on", "shipped_on", "carrier", "tracking_number", "eta",
            "delivered_on", "cancelled_on", "refunded_on", "items", "total", "currency")
    return {"order_id": order["id"], **{k: order[k] for k in keys}, "is_late": late > 0, "days_late": late}


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
    """Search help-centre articles (shipping, returns, refunds, warranty, account, payments, privacy, troubleshooting)."""
    results = ctx.store.search_kb(query, top_k=top_k)
    if not results:
        return {"results": [], "hint": "No article matched; try different keywords or escalate to a human."}
    return {"results": results}


def refund_decision(order: dict[str, Any], policy: Policy, today: date) -> tuple[str, float, str]:
    """Apply the refund policy to an order: ``(outcome, amount, explanation)``."""
    oid, status, total = order["id"], order["status"], order["total"]
    if status == "refunded":
        return "denied", 0.0, f"Order #{oid} was already refunded on {order['refunded_on']}."
    if status == "cancelled":
        return "denied", 0.0, (f"Order #{oid} was cancelled on {order['cancelled_on']} and never charged; "
                               "any pending authorisation drops off within a few days.")
    if status == "processing":
        return "denied", 0.0, (f"Order #{oid} has not shipped yet, so there is nothing to refund. "
                               "Offer cancellation instead (under Orders, or via a human agent): it releases the payment in full.")
    if status in ("shipped", "delayed"):
        late = days_late(order, today)
        if late >= policy.lost_parcel_days_after_eta:
            return "approved", total, (f"Order #{oid} is {late} days past its ETA ({order['eta']}) and is treated "
                                       f"as lost; refunded in full, {policy.refund_processing}.")
        eligible = date.fromisoformat(order["eta"]).toordinal() + policy.lost_parcel_days_after_eta
        return "denied", 0.0, (f"Order #{oid} is still in transit (ETA {order['eta']}"
                               f"{f', {late} day(s) late' if late else ''}). If it has not arrived by "
                               f"{date.fromordinal(eligible).isoformat()} it counts as lost and is refunded in full; "
                               "once delivered it can be returned within the return window.")
    start = order.get("delivered_on") or order["ordered_on"]
    age = (today - date.fromisoformat(start)).days
    window = policy.refund_window_days
    if age <= window:
        return "approved", total, (f"Order #{oid} was delivered {age} days ago, within the {window}-day refund "
                                   f"window; refunded in full, {policy.refund_processing}.")
    return "denied", 0.0, (f"Order #{oid} was delivered on {start}, {age} days ago, outside the {window}-day refund "
                           f"window. If an item is faulty, the {policy.warranty_months}-month warranty still covers it.")


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
        outcome, amount, explanation = refund_decision(order, store.policy, store.today)
        record = store.record_refund(order["id"], reason=reason, outcome=outcome, amount=amount, explanation=explanation)
    return {k: record[k] for k in ("refund_id", "order_id", "outcome", "amount", "currency", "explanation")}


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
    return {**ticket, "message": f"Ticket {ticket['ticket_id']} created; position {ticket['queue_position']} in the queue."}


@tool
def update_ticket(
    ctx: ToolContext,
    category: Literal["order_status", "refund", "returns", "technical", "account", "billing", "other"] | None = None,
    intent_summary: Annotated[str | None, Field(max_length=300, description="One sentence: what the customer wants")] = None,
    sentiment: Literal["positive", "neutral", "negative"] | None = None,
    frustration: Annotated[int | None, Field(ge=0, le=3, description="0 calm … 3 very frustrated")] = None,
    priority: Priority | None = None,
    language: Annotated[str | None, Field(max_length=35, description="Customer's language, e.g. en, es, de, fr")] = None,
    next_steps: Annotated[list[str] | None, Field(max_length=10, description="Follow-up actions")] = None,
) -> dict[str, Any]:
    """Record structured ticket fields for the CRM."""
    values = {
        "category": category, "intent_summary": intent_summary, "sentiment": sentiment, "frustration": frustration,
        "priority": priority, "language": language, "next_steps": next_steps,
    }
    ctx.ticket_fields.update({k: v for k, v in values.items() if v is not None})
    return {"ticket": dict(ctx.ticket_fields)}
