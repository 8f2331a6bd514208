"""The rule-based support agent: a validated request in, a reply (text or tool calls) out.

Deterministic: the same request always gets the same reply. It calls only the
tools the request offers, never calls tools again after their results for the
same user turn (so agent loops end), and answers JSON when asked for it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from supportbot.engine import answers
from supportbot.engine.answers import ToolOutcome
from supportbot.engine.attachments import analyse_log, describe_image, find_logs, recall_log
from supportbot.engine.completions import ToolCall
from supportbot.engine.facts import Facts, analyse_turn, ticket_hints
from supportbot.engine.schema_fill import fill_schema
from supportbot.engine.structured import json_content
from supportbot.vocabulary import content_text, find_cut_off_notes


@dataclass
class Reply:
    """What the engine answers: text, tool calls, or both."""

    content: str | None
    calls: list[ToolCall] = field(default_factory=list)
    is_json: bool = False


@dataclass
class Turn:
    """The conversation seen from its last user message."""

    facts: Facts
    outcomes: list[ToolOutcome]  # tool results after the last user message
    awaiting_user: bool  # the last message is the user's: the rules may call tools


def read_turn(messages: Sequence[Mapping[str, Any]]) -> Turn:
    """Find the last user message, the earlier user texts and the tool results since."""
    last_user = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=None)
    if last_user is None:
        return Turn(analyse_turn(""), [], awaiting_user=False)
    earlier = [content_text(m.get("content")) for m in messages[:last_user] if m.get("role") == "user"]
    content = messages[last_user].get("content")
    text = content_text(content)
    logs = find_logs(text) if "```" in text else []
    facts = analyse_turn(content, earlier, logs)
    facts.cut_off = find_cut_off_notes(text) if logs else {}
    if not logs and facts.asks_failure and not (facts.order_ids or facts.refund or facts.escalate):
        # "Why do payments fail?" after a log was sent: the question is about that log (the request
        # carries it again, or its analysis).
        facts.earlier_logs = [log for t in earlier if "```" in t for log in find_logs(t)][-1:]
    calls: dict[str, tuple[str, dict[str, Any]]] = {}
    outcomes: list[ToolOutcome] = []
    for msg in messages[last_user + 1 :]:
        for call in msg.get("tool_calls") or ():
            fn = call.get("function", {})
            calls[call.get("id", "")] = (fn.get("name", ""), _loads(fn.get("arguments")))
        if msg.get("role") == "tool":
            name, args = calls.get(msg.get("tool_call_id", ""), ("unknown", {}))
            outcomes.append(
                ToolOutcome(name, args, answers.parse_result(content_text(msg.get("content")) or msg.get("content")))
            )
    return Turn(facts, outcomes, awaiting_user=last_user == len(messages) - 1)


def _loads(arguments: Any) -> dict[str, Any]:
    try:
        value = json.loads(arguments) if isinstance(arguments, str) else arguments
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def offered_tools(body: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Tool name -> its parameters schema, honouring tool_choice "none"."""
    if body.get("tool_choice") == "none":
        return {}
    return {t["function"]["name"]: t["function"].get("parameters") or {} for t in body.get("tools") or ()}


TICKET_CATEGORIES = ("order_status", "refund", "returns", "technical", "account", "billing")


def plan_calls(facts: Facts, offered: Mapping[str, Mapping[str, Any]]) -> list[ToolCall]:
    """The tool calls the rules want for a fresh user turn, limited to the offered tools."""
    wanted: list[tuple[str, dict[str, Any]]] = []
    refund_ids = facts.order_ids or facts.earlier_order_ids[:1]
    if facts.refund and refund_ids and "request_refund" in offered:
        reason = facts.text[:300] if len(facts.text) >= 3 else "Customer asked for a refund"
        wanted += [("request_refund", {"order_id": oid, "reason": reason}) for oid in refund_ids]
    elif facts.order_ids:
        wanted += [("check_order_status", {"order_id": oid}) for oid in facts.order_ids]
    for email in facts.emails[:1]:
        wanted.append(("lookup_customer", {"email": email}))
    if not facts.emails:
        wanted += [("lookup_customer", {"customer_id": cid}) for cid in facts.customer_ids[:1]]
    # A question about an attached log is answered from the log, not from help articles.
    if facts.policy and not facts.refund and not facts.logs and not facts.earlier_logs:
        wanted.append(("search_knowledge_base", {"query": " ".join(facts.text.split())[:200], "top_k": 3}))
    if facts.escalate:
        reason = (
            "Legal threat: "
            if facts.legal
            else "Customer asked for a human: "
            if facts.wants_human
            else "Frustrated customer: "
        )
        wanted.append(
            ("escalate_to_human", {"reason": reason + " ".join(facts.text.split())[:200], "priority": facts.priority})
        )
    if "update_ticket" in offered:
        hints = ticket_hints(facts)
        if hints["category"] not in TICKET_CATEGORIES:
            del hints["category"]  # nothing new this turn: leave the category already recorded
        wanted.append(("update_ticket", hints))
    return [ToolCall(name, fit_arguments(args, offered[name])) for name, args in wanted if name in offered]


def fit_arguments(args: Mapping[str, Any], schema: Mapping[str, Any]) -> dict[str, Any]:
    """Arguments shaped by the tool's own schema: known names only, types and enums coerced."""
    if not schema.get("properties"):
        return dict(args)
    value = fill_schema(schema, args)
    return value if isinstance(value, dict) else dict(args)


def apply_tool_choice(
    calls: list[ToolCall], choice: Any, facts: Facts, offered: Mapping[str, Mapping[str, Any]]
) -> list[ToolCall]:
    """Honour ``required`` and a named function the way the API promises."""
    if isinstance(choice, dict):
        name = choice["function"]["name"]
        chosen = [c for c in calls if c.name == name]
        return chosen or [ToolCall(name, fit_arguments(_fallback_args(facts), offered[name]))]
    if choice == "required" and not calls:
        name = "search_knowledge_base" if "search_knowledge_base" in offered else next(iter(offered))
        return [ToolCall(name, fit_arguments(_fallback_args(facts), offered[name]))]
    return calls


def _fallback_args(facts: Facts) -> dict[str, Any]:
    query = " ".join(facts.text.split())[:200] or "help"
    return {**ticket_hints(facts), "query": query, "top_k": 3, "reason": query}


def compose(turn: Turn, offered: set[str], model: str | None = None) -> str:
    """The final text answer: tool results first, then attachments, in the customer's language. ``model`` is
    named when the request offered no tools at all (the model cannot use them)."""
    facts, lang = turn.facts, turn.facts.language
    parts: list[str] = []
    for outcome in turn.outcomes:
        if (paragraph := answers.render_outcome(outcome, lang)) is not None:
            parts.append(paragraph)
    attached = bool(facts.images or facts.logs or facts.earlier_logs)
    # With an attachment the answer is about it; a "can't look that up" line would only confuse.
    if not attached and (not turn.outcomes or all(o.name == "update_ticket" for o in turn.outcomes)):
        parts.append(answers.direct_reply(facts, offered if not turn.outcomes else set(), lang, model))
    for url in facts.images:
        parts.append(describe_image(url, lang))
    for filename, text in facts.logs:
        parts.append(analyse_log(filename, text, facts.cut_off.get(filename), lang))
    for filename, text in facts.earlier_logs:
        parts.append(recall_log(filename, text, lang))
    return answers.finish(parts, lang)


def respond(body: Mapping[str, Any]) -> Reply:
    """The engine's reply to a validated chat-completions request."""
    fmt = body.get("response_format") or {}
    if fmt.get("type") in ("json_object", "json_schema"):
        return Reply(json_content(body), is_json=True)
    turn = read_turn(body["messages"])
    offered = offered_tools(body)
    choice = body.get("tool_choice", "auto")
    forced = choice == "required" or isinstance(choice, dict)
    if offered and (turn.awaiting_user or forced):
        calls = plan_calls(turn.facts, offered) if turn.awaiting_user else []
        calls = apply_tool_choice(calls, choice, turn.facts, offered)
        if calls:
            return Reply(None, calls)
    # No tools in the request at all: the model was chosen without them, and the answer says so.
    toolless = str(body.get("model")) if not body.get("tools") else None
    return Reply(compose(turn, set(offered), toolless))
