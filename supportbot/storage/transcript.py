"""Exports people read: a Markdown transcript, and the scrubbing every export goes through.

Nothing exported carries a credential or a server-side path: ``scrub`` drops those keys
wherever they appear.
"""

from __future__ import annotations

import json
from typing import Any

from supportbot.session import Session
from supportbot.vocabulary import content_text

# Keys dropped from anything we export, wherever they appear: a route or a tool
# result must never carry a credential out of the app.
SECRET_KEYS = frozenset(
    {"api_key", "apikey", "oxlo_api_key", "openai_api_key", "authorization", "secret", "password", "settings"}
)
# Meaningful only on this server (where an upload sits on disk): never exported.
SERVER_ONLY_KEYS = frozenset({"local_file"})


def scrub(value: Any) -> Any:
    """``value`` without credentials or server-only keys, wherever they appear."""
    if isinstance(value, dict):
        return {k: scrub(v) for k, v in value.items() if str(k).lower() not in SECRET_KEYS | SERVER_ONLY_KEYS}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    return value


def _turn_of_calls(session: Session) -> dict[str, int]:
    """call_id -> turn, read from the model history (user message k starts turn k)."""
    turn, out = 0, {}
    for msg in session.history:
        if msg.get("role") == "user":
            turn += 1
        for call in msg.get("tool_calls") or ():
            out[call.get("id", "")] = turn
    return out


def _attachment_line(att: dict[str, Any]) -> str:
    kind = att.get("kind") or att.get("type") or "file"
    bits = [str(kind)]
    if att.get("width") and att.get("height"):
        bits.append(f"{att['width']}x{att['height']}")
    for key in ("lines", "kept_lines", "tokens", "reduced_to_tokens", "bytes"):
        if att.get(key) is not None:
            bits.append(f"{key.replace('_', ' ')} {att[key]}")
    return f"- {att.get('name') or att.get('filename') or 'attachment'} ({', '.join(bits)})"


def export_markdown(session: Session) -> str:
    """A readable transcript: per turn the customer's text and attachments, route, tool calls, answer
    and usage; then the ticket."""
    call_turns = _turn_of_calls(session)
    turns: dict[int, dict[str, list[Any]]] = {}

    def bucket(n: int) -> dict[str, list[Any]]:
        return turns.setdefault(n, {"user": [], "answer": [], "routes": [], "calls": [], "usage": []})

    current = 0
    for msg in session.messages:
        if (msg.get("metadata") or {}).get("title"):
            continue  # tool-call display bubbles: the calls are rendered from tool_calls below
        if msg.get("role") == "user":
            current = int(msg.get("turn") or current + 1)
            bucket(current)["user"].append(msg)
        elif msg.get("role") == "assistant":
            bucket(int(msg.get("turn") or current))["answer"].append(msg)
    for i, route in enumerate(session.routes):
        bucket(int(route.get("turn") or i + 1))["routes"].append(route)
    for call in session.tool_calls:
        bucket(int(call.get("turn") or call_turns.get(call.get("call_id", ""), 0)))["calls"].append(call)
    for rec in session.usage:
        bucket(int(rec.get("turn") or 0))["usage"].append(rec)

    title = session.ticket.get("ticket_id") or "Support conversation"
    out = [f"# {title}", ""]
    for n in sorted(turns):
        t = turns[n]
        out += [f"## Turn {n}" if n else "## Outside a turn", ""]
        for msg in t["user"]:
            out += ["**Customer:**", "", content_text(msg.get("content")), ""]
            atts = [a for a in msg.get("attachments") or () if isinstance(a, dict)]
            if atts:
                out += ["Attachments:"] + [_attachment_line(a) for a in atts] + [""]
        for r in t["routes"]:
            out += [f"**Route:** `{r.get('model')}` · {r.get('category')} · {r.get('reason')}", ""]
        for c in t["calls"]:
            mark = "ok" if c.get("ok") else f"failed: {c.get('error')}"
            body = json.dumps(
                scrub({"arguments": c.get("arguments"), "result": c.get("result")}),
                ensure_ascii=False,
                indent=2,
                default=str,
            )
            out += [
                f"<details><summary>Tool <code>{c.get('name')}</code> "
                f"({mark}, {c.get('duration_ms', 0):.0f} ms)</summary>",
                "",
                "```json",
                body,
                "```",
                "",
                "</details>",
                "",
            ]
        for msg in t["answer"]:
            out += ["**Assistant:**", "", content_text(msg.get("content")), ""]
        if t["usage"]:
            prompt = sum(int(u.get("prompt_tokens", 0)) for u in t["usage"])
            completion = sum(int(u.get("completion_tokens", 0)) for u in t["usage"])
            est = " (some estimated)" if any(u.get("estimated") for u in t["usage"]) else ""
            out += [
                f"**Usage:** {len(t['usage'])} request(s), {prompt:,} prompt + {completion:,} completion tokens{est}",
                "",
            ]
    if session.ticket:
        out += ["## Ticket", "", "```json", json.dumps(scrub(session.ticket), ensure_ascii=False, indent=2), "```", ""]
    return "\n".join(out)
