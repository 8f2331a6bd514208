"""JSON answers for ``response_format``: ticket hints from a conversation, fitted to a schema.

The conversation may be the chat itself or a transcript pasted into one user
message ("user: …", "assistant: …", "tool name({args}) -> {result}"), as the
ticket extractor sends it; both give the same hints.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from supportbot.engine import answers
from supportbot.engine.facts import analyse_turn, ticket_hints
from supportbot.engine.schema_fill import fill_schema
from supportbot.vocabulary import content_text

# A transcript's header lines: "tool name({args}) -> {result}" or "user: …" / "assistant: …", each
# found by its leading newline (a literal the regex engine skips to), so one search reads the whole
# transcript and the lines between headers are sliced, never looped over.
_HEADER = re.compile(r"\n(?:tool (\w+)\(([^\n]*)\) -> ([^\n]*)|((?i:user|assistant))\b:?[^\S\n]?([^\n]*))")
_TICKET_ID = re.compile(r"ticket_id\s+['\"]?([A-Za-z0-9][\w-]{2,40})")
_COURTESY = ("anything else", "something else", "help you with", "other questions")


def parse_transcript(text: str) -> tuple[list[str], list[str], list[tuple[str, dict, Any]]]:
    """User texts, assistant texts and tool calls (name, args, result) of a pasted transcript."""
    users: list[str] = []
    assistants: list[str] = []
    tools: list[tuple[str, dict, Any]] = []
    current: list[str] | None = None
    text = "\n" + text.replace("\r\n", "\n")
    pos = 0
    for m in _HEADER.finditer(text):
        if current:
            current[-1] += text[pos : m.start()]  # the lines since the last header, each after its "\n"
        if m.group(1) is not None:
            args = answers.parse_result(m.group(2))
            tools.append((m.group(1), args if isinstance(args, dict) else {}, answers.parse_result(m.group(3))))
            current = None
        else:
            current = users if m.group(4).lower() == "user" else assistants
            current.append(m.group(5))
        pos = m.end()
    if current:
        current[-1] += text[pos:].removesuffix("\n")
    return users, assistants, tools


def _courtesy_ending(answer: str) -> bool:
    """Whether the answer's last question (the text since the question before it) is a courtesy one."""
    last_question = answer.rstrip()[:-1].rsplit("?", 1)[-1].lower()
    return any(phrase in last_question for phrase in _COURTESY)


def conversation_hints(messages: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Ticket hints from the whole conversation: customer turns, the agent's replies, tool results."""
    users: list[str] = []
    assistants: list[str] = []
    tools: list[tuple[str, dict, Any]] = []
    results_by_id: dict[str, Any] = {
        m.get("tool_call_id", ""): answers.parse_result(content_text(m.get("content")))
        for m in messages
        if m.get("role") == "tool"
    }
    for msg in messages:
        text = content_text(msg.get("content"))
        if msg.get("role") == "user":
            t_users, t_assistants, t_tools = parse_transcript(text)
            if t_users or t_tools:
                users, assistants, tools = users + t_users, assistants + t_assistants, tools + t_tools
            elif not (users and text.lstrip().startswith("Your reply was not")):  # skip repair prompts
                users.append(text)
        elif msg.get("role") == "assistant":
            if text.strip():
                assistants.append(text)
            for call in msg.get("tool_calls") or ():
                fn = call.get("function", {})
                args = answers.parse_result(fn.get("arguments") or "{}")
                tools.append(
                    (fn.get("name", ""), args if isinstance(args, dict) else {}, results_by_id.get(call.get("id", "")))
                )
    facts = analyse_turn("\n".join(users[-1:]) or "", users[:-1])
    whole = analyse_turn("\n".join(users))
    # Mood and language follow the latest customer turn; ids and intents come from all of them.
    whole.language, whole.frustration = facts.language, max(facts.frustration, whole.frustration)
    actions, escalation = [], None
    for name, args, result in tools:
        error = isinstance(result, dict) and bool(result.get("error"))
        line = answers.render_outcome(answers.ToolOutcome(name, args, result), "en") or f"{name} done"
        actions.append(
            {
                "tool": name,
                "ok": not error,
                "outcome": line.splitlines()[0][:200],
                "text": f"{name}: {line.splitlines()[0][:160]}",
            }
        )
        if name == "escalate_to_human" and isinstance(result, dict) and result.get("ticket_id"):
            escalation = result["ticket_id"]
        if name == "request_refund":
            whole.refund = True
    last = assistants[-1].strip() if assistants else ""
    status = "pending_customer" if (not last or (last.endswith("?") and not _courtesy_ending(last))) else "resolved"
    system = "\n".join(content_text(m.get("content")) for m in messages if m.get("role") in ("system", "developer"))
    ticket = _TICKET_ID.search(system)
    ticket_id = (
        ticket.group(1) if ticket else "TCK-" + hashlib.sha256("\n".join(users).encode()).hexdigest()[:8].upper()
    )
    return ticket_hints(
        whole, {"escalation_ticket_id": escalation, "actions_taken": actions, "status": status, "ticket_id": ticket_id}
    )


def schema_in_prompt(messages: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """A JSON schema quoted in the system prompt (JSON mode carries the schema there)."""
    for msg in messages:
        if msg.get("role") not in ("system", "developer"):
            continue
        text = content_text(msg.get("content"))
        for start in [m.start() for m in itertools.islice(re.finditer(r"\{", text), 50)]:
            try:
                value, _ = json.JSONDecoder().raw_decode(text, start)
            except json.JSONDecodeError:
                continue
            if isinstance(value, dict) and ("properties" in value or "$defs" in value):
                return value
    return None


def json_content(body: Mapping[str, Any]) -> str:
    """The JSON text answering a json_object or json_schema request."""
    messages = body["messages"]
    hints = conversation_hints(messages)
    fmt = body["response_format"]
    if fmt.get("type") == "json_schema":
        schema = fmt["json_schema"].get("schema") or {"type": "object"}
    else:
        schema = schema_in_prompt(messages)
    if schema is not None:
        value = fill_schema(schema, hints)
    else:
        value = {k: v for k, v in hints.items() if v is not None and k != "customer"}
    return json.dumps(value, ensure_ascii=False)
