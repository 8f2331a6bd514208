"""Ticket extraction: the model fills the :class:`Ticket` schema in one extra request.

Models with JSON-schema output get strict ``response_format``; others get JSON mode with the
schema in the prompt. Invalid output gets one repair attempt, then an error the panel can
show. Never raises for model or API failures: the chat goes on.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic import ValidationError

from supportbot.client import sdk_attempts
from supportbot.config import redact
from supportbot.errors import LimitReached
from supportbot.events import UsageRecord
from supportbot.limits import NO_LIMIT, Budget
from supportbot.routing.catalog import ModelInfo
from supportbot.routing.tokens import estimate_messages, estimate_tokens
from supportbot.ticket.record import Ticket, apply_facts, ticket_id_for, ticket_json_schema, tool_facts
from supportbot.vocabulary import content_text

if TYPE_CHECKING:  # the SDK costs ~0.5 s to import: loaded on the first request, not at start-up
    import openai


@dataclass
class Extraction:
    """The result of extraction mode: a ticket or an error, and every request it cost."""

    ticket: Ticket | None
    error: str | None
    usage: list[UsageRecord] = field(default_factory=list)


def _transcript(messages: list[dict[str, Any]], tool_calls: list[dict[str, Any]]) -> str:
    lines = [
        f"{m.get('role', '?')}: {content_text(m.get('content'))}"
        for m in messages
        if m.get("role") in ("user", "assistant") and content_text(m.get("content")).strip()
    ]
    for call in tool_calls:
        args = json.dumps(call.get("arguments"), ensure_ascii=False, default=str)
        result = json.dumps(
            call.get("result") if call.get("ok", True) else {"error": call.get("error")},
            ensure_ascii=False,
            default=str,
        )
        lines.append(f"tool {call.get('name')}({args}) -> {result}")
    return "\n".join(lines)


def extraction_messages(
    *, conversation_id: str, messages: list[dict[str, Any]], tool_calls: list[dict[str, Any]], schema_in_prompt: bool
) -> list[dict[str, Any]]:
    """The extraction request's messages; the schema goes in the prompt only for JSON mode."""
    system = [
        "You turn a customer-support conversation into one support ticket.",
        "Reply with a single JSON object and nothing else.",
        f"Use ticket_id {ticket_id_for(conversation_id)!r}.",
        "Order ids are digits only. frustration is 0 (none) to 3 (high).",
        "status is escalated when escalate_to_human succeeded; resolved when the customer's last message confirms "
        "the matter is settled or a refund was approved; pending_customer when the agent's last reply asks the "
        "customer something, a refund was refused or the order is late; else open.",
        "actions_taken has one entry per tool call made for the customer (not update_ticket), its outcome one "
        "sentence.",
    ]
    if schema_in_prompt:
        system += ["The object must match this JSON schema exactly:", json.dumps(ticket_json_schema())]
    user = ["Conversation:", _transcript(messages, tool_calls)]
    return [{"role": "system", "content": "\n".join(system)}, {"role": "user", "content": "\n".join(user)}]


def _parse(content: str | None) -> tuple[Ticket | None, str]:
    text = (content or "").strip()
    # JSON-mode models sometimes fence their reply. Sliced, not matched: a lazy group followed by
    # optional whitespace and the closing fence is quadratic on a reply full of whitespace.
    if len(text) >= 6 and text.startswith("```") and text.endswith("```"):
        inner = text[3:-3]
        text = (inner[4:] if inner.startswith("json") else inner).strip()
    try:
        return Ticket.model_validate_json(text), ""
    except ValidationError as exc:
        errs = exc.errors()[:5]
        detail = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in errs)
        return None, detail


async def _request(
    client: openai.AsyncOpenAI,
    model: ModelInfo,
    req: list[dict[str, Any]],
    response_format: dict[str, Any],
    max_tokens: int,
    purpose: Literal["ticket_extraction", "ticket_repair"],
    turn: int,
    budget: Budget,
    usage: list[UsageRecord],
) -> tuple[str, str | None, UsageRecord]:
    import openai

    # Reserved first, settled with the SDK's attempts after: retries count against the budget too.
    await budget.reserve()
    start = time.perf_counter()
    try:
        raw = await client.chat.completions.with_raw_response.create(
            model=model.id,
            messages=req,
            response_format=response_format,
            max_tokens=max_tokens,  # type: ignore[arg-type]
        )
    except openai.APIError as exc:
        attempts = sdk_attempts(exc, client.max_retries)
        await budget.record(attempts)
        usage += [UsageRecord(model.id, "retry", 0, 0, False, 0.0, turn=turn) for _ in range(attempts)]
        raise
    await budget.record(1 + raw.retries_taken)
    usage += [UsageRecord(model.id, "retry", 0, 0, False, 0.0, turn=turn) for _ in range(raw.retries_taken)]
    resp = raw.parse()
    latency = (time.perf_counter() - start) * 1000
    choice = resp.choices[0] if resp.choices else None
    content = choice.message.content if choice else None
    if resp.usage is not None:
        record = UsageRecord(
            model.id, purpose, resp.usage.prompt_tokens, resp.usage.completion_tokens, False, latency, turn=turn
        )
    else:
        record = UsageRecord(
            model.id, purpose, estimate_messages(req), estimate_tokens(content or ""), True, latency, turn=turn
        )
    return content or "", choice.finish_reason if choice else None, record


async def extract_ticket(
    client: openai.AsyncOpenAI,
    model: ModelInfo,
    *,
    conversation_id: str,
    messages: list[dict[str, Any]],
    tool_calls: list[dict[str, Any]],
    max_tokens: int,
    turn: int,
    budget: Budget = NO_LIMIT,
) -> Extraction:
    """Ask the model for the ticket (strict schema, or JSON mode), with one repair; never raises for API errors.

    Each request is reserved from ``budget``; a spent budget ends extraction with an error, not the chat."""
    import openai

    strict = model.capabilities.json_schema
    response_format: dict[str, Any] = (
        {
            "type": "json_schema",
            "json_schema": {"name": "support_ticket", "schema": ticket_json_schema(), "strict": True},
        }
        if strict
        else {"type": "json_object"}
    )
    req = extraction_messages(
        conversation_id=conversation_id, messages=messages, tool_calls=tool_calls, schema_in_prompt=not strict
    )
    usage: list[UsageRecord] = []
    facts = tool_facts(tool_calls)
    try:
        content, finish, record = await _request(
            client, model, req, response_format, max_tokens, "ticket_extraction", turn, budget, usage
        )
        usage.append(record)
        ticket, problem = _parse(content)
        if ticket is None:
            if finish == "length":
                problem += f" (the reply was cut off at max_tokens={max_tokens})"
            repair = [
                "Your reply was not a valid ticket.",
                f"Validation errors: {problem}",
                "Reply again with only the corrected JSON object.",
            ]
            req = req + [{"role": "assistant", "content": content}, {"role": "user", "content": "\n".join(repair)}]
            content, finish, record = await _request(
                client, model, req, response_format, max_tokens, "ticket_repair", turn, budget, usage
            )
            usage.append(record)
            ticket, problem = _parse(content)
            if ticket is None:
                msg = (
                    f"Ticket extraction failed: {model.id} returned an invalid ticket twice (after one repair). "
                    f"Last error: {problem}"
                )
                return Extraction(None, msg, usage)
    except LimitReached as exc:
        return Extraction(None, f"Ticket extraction skipped: {exc}", usage)
    except openai.APIError as exc:
        status = getattr(exc, "status_code", None)
        where = f"HTTP {status}" if status else type(exc).__name__
        # The message is the server's own text: it may echo the key the client sent.
        detail = redact(exc.message, client.api_key)
        return Extraction(
            None, f"Ticket extraction failed: the model service returned an error ({where}): {detail}", usage
        )
    return Extraction(apply_facts(ticket, facts, conversation_id, None), None, usage)
