"""Pure rendering: session data -> what the panels show. No Gradio imports here,
so every function is tested without a server.

Every Chatbot message's content is a string, never a dict: Gradio would serve a dict with a
``path`` as a file and render ``{"type": "component", ...}`` as a component. Text that came from a
visitor, a model or a tool passes through ``ui.inert`` first, so it cannot load remote images.
What a bubble shows is bounded (``SHOWN_CHARS``): a 200,000-character message is stored whole but
never re-rendered whole on every redraw.
"""

from __future__ import annotations

import html
import json
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from supportbot.session import Session, pending_view
from supportbot.tools.rounds import DENIED
from supportbot.ui.inert import inert_markdown, md_escape, upload_image

# compact: one collapsed step per turn (route and tools), so a turn's start stays in view; the agent view
# beside the chat has the detail. all: the route and every call as its own step.
STEP_MODES = ("compact", "all", "tools only", "hidden")
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
    user: str = ""  # the customer's message, shown at once (before the turn has recorded it)
    files: list[str] = field(default_factory=list)  # its attachments' names


def _short(value: Any, limit: int = 80) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _json_block(value: Any) -> str:
    return "```json\n" + bounded(json.dumps(value, indent=2, ensure_ascii=False, default=str)) + "\n```"


def _tool_step(call: dict[str, Any]) -> dict[str, Any]:
    ok = call["ok"]
    # A JSON block cannot end its fence early (json.dumps never starts a line with a backtick), so
    # everything in it shows as code; the error text is prose and made inert.
    body = "**Arguments**\n" + _json_block(call["arguments"]) + "\n**" + ("Result" if ok else "Error") + "**\n"
    body += _json_block(call["result"]) if ok else "> " + inert_markdown(str(call["error"]))
    name = md_escape(str(call["name"]))
    title = f"🔧 {name}" if ok else f"🚫 {name} not approved" if call["error"] == DENIED else f"⚠️ {name} failed"
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


IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp"})


def served_upload(path: Any, uploads: Path | None) -> str | None:
    """``path`` resolved, when it is an image file inside Gradio's upload folder ``uploads``; else None.

    Only our own turns set an attachment's ``local_file`` (an import never carries one); this check
    makes sure that whatever it says, the chat can only ever point at a visitor's own upload.
    """
    if uploads is None or not isinstance(path, str) or not path:
        return None
    try:
        real = Path(path).resolve(strict=True)
        inside = real.is_relative_to(uploads.resolve())
        return str(real) if inside and real.suffix.lower() in IMAGE_SUFFIXES and real.is_file() else None
    except (OSError, ValueError):
        return None


def _code(text: str) -> str:
    """Inline code that its own text cannot close."""
    return "`" + text.replace("`", "'") + "`"


def _compact_step(session: Session, route: dict[str, Any] | None, calls: list[dict[str, Any]]) -> dict[str, Any]:
    """One collapsed step for a turn: the model and the tools in the title, the reason and each call inside."""
    names = [md_escape(str(c["name"])) + ("" if c["ok"] else " ✗") for c in calls]
    title = f"🧭 {md_escape(str(route['model']))}" if route else "🔧"
    title += f" · 🔧 {', '.join(names)}" if names else " · no tools"
    lines = [_inert(session, str(route["reason"]))] if route else []
    for c in calls:
        outcome = _code(_short(c["result"], 70)) if c["ok"] else inert_markdown(_short(c["error"], 120))
        lines.append(f"- **{md_escape(str(c['name']))}** {_code(_short(c['arguments'], 60))} → {outcome}")
    return {"role": "assistant", "content": "\n".join(lines) or "—", "metadata": {"title": title, "status": "done"}}


def _inert(session: Session, text: str) -> str:
    """``inert_markdown`` of a stored message, computed once per session and text."""
    cache = _RENDERED.setdefault(session, {}).setdefault("inert", {})
    if text not in cache:
        cache[text] = inert_markdown(text)
    return cache[text]


def _user_bubble(session: Session, msg: dict[str, Any], uploads: Path | None) -> list[dict[str, Any]]:
    out = []
    if msg.get("content"):
        out.append({"role": "user", "content": _inert(session, bounded(str(msg["content"])))})
    for att in msg.get("attachments") or ():
        filename = str(att.get("filename") or "attachment")
        name = md_escape(filename)
        if att.get("kind") == "image":
            # The visitor's own screenshot, by a same-origin URL Gradio serves from its upload folder;
            # a text line when the file is gone (or was never here: an imported conversation).
            served = served_upload(att.get("local_file"), uploads)
            content = upload_image(served, filename) if served else f"🖼️ *{name}* ({att['width']}×{att['height']})"
        else:
            extra = " — sent again from earlier" if att.get("resent") else ""
            extra += " — cut off (the file ends early)" if att.get("cut_off") else ""
            extra += " — reduced to fit" if att.get("reduced") else ""
            content = f"📄 *{name}* — {att['lines']:,} lines, ~{att['est_tokens']:,} tokens{extra}"
        out.append({"role": "user", "content": content})
    return out or [{"role": "user", "content": "(empty)"}]


def chat_view(
    session: Session, mode: str = "all", live: LiveTurn | None = None, uploads: Path | None = None
) -> list[dict[str, Any]]:
    """The chat as Chatbot messages (string content only), rebuilt from the session (so a reload shows
    the same); screenshots are shown when their file is in Gradio's upload folder ``uploads``."""
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
            out.extend(_user_bubble(session, msg, uploads))
            if mode == "compact" and (turn in routes or calls.get(turn)):
                out.append(_compact_step(session, routes.get(turn), calls.get(turn, [])))
            if mode == "all" and turn in routes:
                r = routes[turn]
                category = str(r["category"]).replace("_", " ")
                out.append(
                    {
                        "role": "assistant",
                        "content": _inert(session, str(r["reason"])),
                        "metadata": {
                            "title": f"🧭 Routed to {md_escape(str(r['model']))} ({md_escape(category)})",
                            "status": "done",
                        },
                    }
                )
            if mode in ("all", "tools only"):
                out.extend(_cached(session, "step", c, _tool_step) for c in calls.get(turn, []))
            if session.pending_call and session.pending_call.get("turn") == turn:
                out.extend(pending_steps(session.pending_call))  # shown in every mode: it needs a decision
            if live is not None and live.turn == turn:
                if mode != "hidden":
                    out.extend(
                        {
                            "role": "assistant",
                            "content": "Running…",
                            "metadata": {
                                "title": f"🔧 {md_escape(name)}",
                                "status": "pending",
                                "log": _short(args, 60),
                            },
                        }
                        for name, args in live.pending.values()
                    )
        elif msg["role"] == "notice":
            if mode in ("all", "compact"):
                out.append(
                    {
                        "role": "assistant",
                        "content": _inert(session, bounded(str(msg["content"]))),
                        "metadata": {"title": "ℹ️ Note", "status": "done"},
                    }
                )
        elif msg["role"] == "assistant":
            answered.add(turn)
            content = _inert(session, bounded(str(msg.get("content") or "")))
            if msg.get("stopped"):
                content = (content + "\n\n" if content else "") + "⏹️ **Stopped**: you stopped this answer."
            if msg.get("error"):
                error = _inert(session, str(msg["error"]))
                head = "⏳ **Limit reached.**" if msg.get("error_kind") == "limit" else "⚠️ **Something went wrong.**"
                content = (content + "\n\n" if content else "") + f"{head} {error}"
            out.append({"role": "assistant", "content": content or "(no answer)"})
    if live is not None and live.turn not in turns and (live.user or live.files):
        # Sent, not yet recorded by the turn (attachments are still being read): shown at once.
        if live.user:
            out.append({"role": "user", "content": inert_markdown(bounded(live.user))})
        out += [{"role": "user", "content": f"📎 *{md_escape(name)}*"} for name in live.files]
    if live is not None and live.text and live.turn not in answered and live.turn in turns:
        out.append({"role": "assistant", "content": inert_markdown(bounded(live.text))})
    return out


def pending_steps(pending: dict[str, Any]) -> list[dict[str, Any]]:
    """A call awaiting approval as the chat shows it: any text said before it, then the call as a paused step."""
    out = []
    if pending.get("text"):
        out.append({"role": "assistant", "content": inert_markdown(bounded(str(pending["text"])))})
    view = pending_view(pending) or {}
    body = (
        "**Arguments**\n"
        + _json_block(view.get("arguments"))
        + "\n⏸️ Waiting for a human agent: **Approve** runs it, **Deny** tells the model it was not approved."
    )
    name = md_escape(str(pending["name"]))
    meta = {"title": f"⏸️ {name} awaits approval", "status": "pending", "log": _short(view.get("arguments"), 60)}
    out.append({"role": "assistant", "content": body, "metadata": meta})
    return out


def approval_prompt(pending: dict[str, Any] | None) -> str:
    """The line above the Approve / Deny buttons."""
    if not pending:
        return ""
    name, call_id = md_escape(str(pending["name"])), md_escape(str(pending["call_id"]))
    args = md_escape(_short((pending_view(pending) or {}).get("arguments"), 90))
    return f"⏸️ **{name}** {args} awaits a human agent's approval (call {call_id})."


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


def _route_extras(r: dict[str, Any]) -> tuple[str, str]:
    """The warning chip and the skipped-models list of a route; tolerant of routes stored before they existed."""
    warning = r.get("warning")
    chip = f' <span class="sb-chip orange">⚠ {html.escape(_short(warning, 60))}</span>' if warning else ""
    skipped = r.get("skipped")
    items = [
        f"<li><code>{html.escape(str(s.get('model')))}</code>: {html.escape(str(s.get('reason')))}</li>"
        for s in (skipped if isinstance(skipped, list) else [])
        if isinstance(s, dict)
    ]
    if not items:
        return chip, ""
    return (
        chip,
        f'<details class="sb-skipped"><summary>{len(items)} skipped</summary><ul>{"".join(items)}</ul></details>',
    )


def routes_html(session: Session) -> str:
    """The Route panel: for each turn the model, its category, why, and why other models were skipped; newest first."""
    if not session.routes:
        return '<div class="sb-empty">Each turn\'s model and the reason it was chosen appear here.</div>'
    rows = []
    for r in reversed(session.routes):
        switched = (
            f' <span class="sb-chip orange">switched from {html.escape(r["switched_from"])}</span>'
            if r.get("switched_from")
            else ""
        )
        warning, skipped = _route_extras(r)
        if r.get("fallback_from"):
            switched += f' <span class="sb-chip red">fell back from {html.escape(str(r["fallback_from"]))}</span>'
        category = r["category"].replace("_", " ")
        rows.append(
            f'<div class="sb-row sb-route"><div><span class="sb-chip purple">{html.escape(category)}</span> '
            f'<b>{html.escape(r["model"])}</b>{switched}{warning}<span class="sb-ms">turn {r["turn"]} · '
            f"~{r['est_tokens']:,} / {r['context_window']:,} tokens</span></div>"
            f'<div class="sb-outcome">{html.escape(r["reason"])}</div>{skipped}</div>'
        )
    return '<div class="sb-rows">' + "".join(rows) + "</div>"
