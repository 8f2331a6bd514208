"""Pure rendering: session data -> what the panels show. No Gradio imports here,
so every function is tested without a server. What a bubble shows is bounded (``SHOWN_CHARS``):
a 200,000-character message is stored whole but never re-rendered whole on every redraw."""

from __future__ import annotations

import html
import json
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from supportbot.session import Session

STEP_MODES = ("all", "tools only", "hidden")
# A chat bubble shows at most this many characters: the browser renders each bubble's markdown
# on every redraw, and while a turn streams every redraw sends the whole chat again.
SHOWN_CHARS = 20_000


def bounded(text: str, limit: int = SHOWN_CHARS) -> str:
    """``text`` cut to ``limit`` characters, saying how much was left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}\n\n… *({len(text) - limit:,} more characters not shown)*"


@dataclass
class LiveTurn:
    """The turn being streamed: not yet in the session's messages."""

    turn: int
    text: str = ""
    pending: dict[str, tuple[str, str]] = field(default_factory=dict)  # call_id -> (name, raw arguments)


def _short(value: Any, limit: int = 80) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _json_block(value: Any) -> str:
    return "```json\n" + bounded(json.dumps(value, indent=2, ensure_ascii=False, default=str)) + "\n```"


def _tool_step(call: dict[str, Any]) -> dict[str, Any]:
    ok = call["ok"]
    body = "**Arguments**\n" + _json_block(call["arguments"]) + "\n**" + ("Result" if ok else "Error") + "**\n"
    body += _json_block(call["result"]) if ok else f"> {call['error']}"
    title = f"🔧 {call['name']}" if ok else f"⚠️ {call['name']} failed"
    return {
        "role": "assistant",
        "content": body,
        "metadata": {
            "title": title,
            "status": "done",
            "duration": round(call["duration_ms"] / 1000, 3),
            "log": _short(call["arguments"], 60),
        },
    }


# Rendered pieces that never change once made (a finished tool call's step and row), so a redraw
# during streaming does not re-serialise every earlier call. Keyed weakly by the session object:
# an entry lives exactly as long as its session, and no session can see another's.
_RENDERED: weakref.WeakKeyDictionary[Session, dict[str, Any]] = weakref.WeakKeyDictionary()


def _cached(session: Session, kind: str, call: dict[str, Any], make: Any) -> Any:
    """``make(call)`` once per finished call and kind of rendering."""
    cache = _RENDERED.setdefault(session, {})
    key = f"{kind}:{call['turn']}:{call['call_id']}"
    if key not in cache:
        cache[key] = make(call)
    return cache[key]


def _user_bubble(msg: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    if msg.get("content"):
        out.append({"role": "user", "content": bounded(msg["content"])})
    for att in msg.get("attachments", []):
        path = att.get("local_file")
        if att["kind"] == "image" and path and Path(path).exists():
            out.append({"role": "user", "content": {"path": path, "alt_text": att["filename"]}})
        elif att["kind"] == "image":
            out.append({"role": "user", "content": f"🖼️ *{att['filename']}* ({att['width']}×{att['height']})"})
        else:
            extra = " — sent again from earlier" if att.get("resent") else ""
            extra += " — cut off (the file ends early)" if att.get("cut_off") else ""
            extra += " — reduced to fit" if att.get("reduced") else ""
            out.append(
                {
                    "role": "user",
                    "content": f"📄 *{att['filename']}* — {att['lines']:,} lines, ~{att['est_tokens']:,} tokens{extra}",
                }
            )
    return out or [{"role": "user", "content": "(empty)"}]


def chat_view(session: Session, mode: str = "all", live: LiveTurn | None = None) -> list[dict[str, Any]]:
    """The chat as Chatbot messages, rebuilt from the session (so a reload shows the same)."""
    routes = {r["turn"]: r for r in session.routes}
    calls: dict[int, list[dict[str, Any]]] = {}
    for call in session.tool_calls:
        calls.setdefault(call["turn"], []).append(call)
    out: list[dict[str, Any]] = []
    answered: set[int] = set()
    turns = [m["turn"] for m in session.messages if m["role"] == "user"]
    for msg in session.messages:
        turn = msg.get("turn", 0)
        if msg["role"] == "user":
            out.extend(_user_bubble(msg))
            if mode == "all" and turn in routes:
                r = routes[turn]
                out.append(
                    {
                        "role": "assistant",
                        "content": r["reason"],
                        "metadata": {
                            "title": f"🧭 Routed to {r['model']} ({r['category'].replace('_', ' ')})",
                            "status": "done",
                        },
                    }
                )
            if mode != "hidden":
                out.extend(_cached(session, "step", c, _tool_step) for c in calls.get(turn, []))
            if live is not None and live.turn == turn:
                if mode != "hidden":
                    out.extend(
                        {
                            "role": "assistant",
                            "content": "Running…",
                            "metadata": {"title": f"🔧 {name}", "status": "pending", "log": _short(args, 60)},
                        }
                        for name, args in live.pending.values()
                    )
        elif msg["role"] == "notice":
            if mode == "all":
                out.append(
                    {
                        "role": "assistant",
                        "content": bounded(msg["content"]),
                        "metadata": {"title": "ℹ️ Note", "status": "done"},
                    }
                )
        elif msg["role"] == "assistant":
            answered.add(turn)
            content = bounded(msg.get("content") or "")
            if msg.get("stopped"):
                content = (content + "\n\n" if content else "") + "⏹️ *Stopped.*"
            if msg.get("error"):
                content = (content + "\n\n" if content else "") + f"⚠️ **Something went wrong.** {msg['error']}"
            out.append({"role": "assistant", "content": content or "(no answer)"})
    if live is not None and live.text and live.turn not in answered and live.turn in turns:
        out.append({"role": "assistant", "content": bounded(live.text)})
    return out


def context_meter(session: Session) -> str:
    """An HTML bar: what the last turn sent against its model's window.

    The prompt tokens the service reported for the turn's largest request (what was actually
    sent: earlier logs as their analysis), or before any report the router's estimate."""
    if not session.routes:
        return '<div class="sb-meter"><span>Context: nothing sent yet</span></div>'
    r = session.routes[-1]
    window = max(r["context_window"], 1)
    sent = [
        u["prompt_tokens"]
        for u in session.usage
        if u.get("turn") == r["turn"] and u.get("purpose") in ("answer", "tool_round") and u.get("model") == r["model"]
    ]
    if sent:
        used, shown, title = max(sent), f"{max(sent):,}", "Prompt tokens of the last turn's largest request, as sent"
    else:
        used, shown = r["est_tokens"], f"~{r['est_tokens']:,}"
        title = "Estimated prompt tokens (with safety margin) against the context window"
    pct = min(100.0, 100.0 * used / window)
    tone = "ok" if pct < 70 else "warn" if pct < 95 else "full"
    return (
        f'<div class="sb-meter sb-{tone}" title="{title}">'
        f"<span>Context {shown} / {window:,} tokens · {html.escape(r['model'])}</span>"
        f'<div class="sb-bar"><div style="width:{pct:.1f}%"></div></div></div>'
    )


def engine_badge(label: str, live: bool) -> str:
    """The header badge saying which engine answers."""
    cls = "sb-live" if live else "sb-offline"
    return f'<span class="sb-badge {cls}">{"🟢" if live else "🧪"} {html.escape(label)}</span>'


CHIP_TONES = {
    "priority": {"urgent": "red", "high": "orange", "normal": "blue", "low": "gray"},
    "sentiment": {"negative": "red", "neutral": "gray", "positive": "green"},
    "status": {"escalated": "orange", "pending_customer": "blue", "resolved": "green"},
}


def ticket_chips(ticket: dict[str, Any], error: str | None = None) -> str:
    """Headline chips above the ticket JSON."""
    if not ticket:
        chips = '<span class="sb-chip gray">No ticket yet: it fills in as the conversation goes</span>'
    else:
        parts = [("category", ticket.get("category", "?"), "purple")]
        for key in ("priority", "sentiment", "status"):
            value = str(ticket.get(key, "?"))
            parts.append((key, value, CHIP_TONES[key].get(value, "gray")))
        if ticket.get("frustration"):
            parts.append(
                ("frustration", f"{ticket['frustration']}/3", "red" if ticket["frustration"] >= 2 else "orange")
            )
        if ticket.get("escalation_ticket_id"):
            parts.append(("escalation", ticket["escalation_ticket_id"], "orange"))
        chips = "".join(
            f'<span class="sb-chip {tone}"><b>{k}</b> {html.escape(str(v).replace("_", " "))}</span>'
            for k, v, tone in parts
        )
    if error:
        chips += f'<div class="sb-error">⚠️ Ticket extraction failed: {html.escape(error)}</div>'
    return f'<div class="sb-chips">{chips}</div>'


def _pre(value: Any) -> str:
    return "<pre>" + html.escape(bounded(json.dumps(value, indent=2, ensure_ascii=False, default=str))) + "</pre>"


def tools_html(session: Session) -> str:
    """The Tool calls panel: a row per call, newest first, each expandable to its full JSON."""
    if not session.tool_calls:
        return '<div class="sb-empty">No tool calls yet. Ask about an order (#48291), a refund or a policy.</div>'
    rows = [_cached(session, "row", c, _tool_row) for c in reversed(session.tool_calls)]
    return '<div class="sb-rows">' + "".join(rows) + "</div>"


_ROW_KEYS = ("name", "arguments", "ok", "result", "error", "duration_ms", "call_id", "turn")


def _tool_row(c: dict[str, Any]) -> str:
    ok = c["ok"]
    outcome = _short(c["result"], 70) if ok else _short(c["error"] or "", 70)
    return (
        f'<details class="sb-row {"sb-ok" if ok else "sb-fail"}"><summary>'
        f'<span class="sb-status">{"✓" if ok else "✗"}</span><b>{html.escape(c["name"])}</b>'
        f"<code>{html.escape(_short(c['arguments'], 48))}</code>"
        f'<span class="sb-ms">{c["duration_ms"]:.1f} ms · turn {c["turn"]}</span>'
        f'<div class="sb-outcome">{html.escape(outcome)}</div></summary>'
        f"{_pre({k: c[k] for k in _ROW_KEYS if k in c})}</details>"
    )


def routes_html(session: Session) -> str:
    """The Route panel: for each turn the model, its category and why; newest first."""
    if not session.routes:
        return '<div class="sb-empty">Each turn\'s model and the reason it was chosen appear here.</div>'
    rows = []
    for r in reversed(session.routes):
        switched = (
            f' <span class="sb-chip orange">switched from {html.escape(r["switched_from"])}</span>'
            if r.get("switched_from")
            else ""
        )
        category = r["category"].replace("_", " ")
        rows.append(
            f'<div class="sb-row sb-route"><div><span class="sb-chip purple">{html.escape(category)}</span> '
            f'<b>{html.escape(r["model"])}</b>{switched}<span class="sb-ms">turn {r["turn"]} · '
            f"~{r['est_tokens']:,} / {r['context_window']:,} tokens</span></div>"
            f'<div class="sb-outcome">{html.escape(r["reason"])}</div></div>'
        )
    return '<div class="sb-rows">' + "".join(rows) + "</div>"
