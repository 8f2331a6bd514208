"""The agent view: for one turn, a timeline of what the agent did. Pure: no Gradio here.

Route and reason (and the models skipped) -> each tool call with its arguments, result and
duration -> what changed in the ticket -> requests, tokens and cost, with the conversation's
cost headline at the end. Every piece of text that came from a visitor, a model or a tool is
escaped: this is HTML, rendered by Gradio's HTML component.

Each step is a ``<div class="sb-step sb-<kind>">`` with a title line and an optional body, so a new
kind of step (a tool call waiting for approval, a fallback to another model) is one more
``_step`` call.
"""

from __future__ import annotations

import html
import json
from typing import Any

from supportbot.pricing import Pricing, summarize
from supportbot.session import Session
from supportbot.ui.render import LiveTurn, bounded
from supportbot.ui.usage_view import headline, money, plural

LATEST = "latest"
_PURPOSES = ("tool_round", "answer", "ticket_extraction", "ticket_repair", "retry")
_SHORT = 70


def _short(text: Any, limit: int = _SHORT) -> str:
    value = text if isinstance(text, str) else json.dumps(text, ensure_ascii=False, default=str)
    value = " ".join(value.split())
    return value if len(value) <= limit else value[: limit - 1] + "…"


def _esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _pre(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, indent=2, ensure_ascii=False, default=str)
    return f"<pre>{_esc(bounded(text, 6000))}</pre>"


def _step(kind: str, icon: str, title: str, meta: str = "", body: str = "") -> str:
    """One step of the timeline; ``title``, ``meta`` and ``body`` are HTML made by the caller (escaped)."""
    meta_html = f"<span class='sb-meta'>{meta}</span>" if meta else ""
    body_html = f"<div class='sb-body'>{body}</div>" if body else ""
    return (
        f"<div class='sb-step sb-{kind}'><div class='sb-title'><span class='sb-icon'>{icon}</span>"
        f"<span class='sb-name'>{title}</span>{meta_html}</div>{body_html}</div>"
    )


# --------------------------------------------------------------------------- which turn


def turns(session: Session, live: LiveTurn | None = None) -> list[int]:
    """The turns with a customer message, oldest first (the live one included)."""
    numbers = sorted({m["turn"] for m in session.messages if m["role"] == "user" and isinstance(m.get("turn"), int)})
    if live is not None and live.turn not in numbers:
        numbers.append(live.turn)
    return numbers


def turn_choices(session: Session) -> list[tuple[str, str]]:
    """The turn picker: the latest turn (it follows new turns), then every turn, newest first."""
    texts = {m["turn"]: m for m in session.messages if m["role"] == "user"}
    choices = [("Latest turn", LATEST)]
    for n in reversed(turns(session)):
        msg = texts.get(n, {})
        words = _short(msg.get("content") or "", 40) or ", ".join(a["filename"] for a in msg.get("attachments", ()))
        choices.append((f"Turn {n} · {words or '(attachment)'}", str(n)))
    return choices


def chosen_turn(session: Session, value: Any, live: LiveTurn | None = None) -> int | None:
    """The turn a picker value names; the latest for ``LATEST`` or anything unknown."""
    numbers = turns(session, live)
    if isinstance(value, str) and value.isdigit() and int(value) in numbers:
        return int(value)
    return numbers[-1] if numbers else None


# --------------------------------------------------------------------------- steps


def _route_step(route: dict[str, Any]) -> str:
    category = str(route.get("category", "")).replace("_", " ")
    chips = [f"<span class='sb-chip purple'>{_esc(category)}</span>"]
    if route.get("rule"):
        chips.append(f"<span class='sb-chip gray'>rule: {_esc(route['rule'])}</span>")
    if route.get("switched_from"):
        chips.append(f"<span class='sb-chip orange'>switched from {_esc(route['switched_from'])}</span>")
    if route.get("fallback_from"):
        chips.append(f"<span class='sb-chip orange'>fell back from {_esc(route['fallback_from'])}</span>")
    body = f"<div class='sb-chips'>{''.join(chips)}</div><div>{_esc(route.get('reason', ''))}</div>"
    skipped = [s for s in route.get("skipped") or () if isinstance(s, dict)]
    if skipped:
        items = "".join(f"<li><code>{_esc(s.get('model'))}</code>: {_esc(s.get('reason'))}</li>" for s in skipped)
        body += f"<details><summary>{plural(len(skipped), 'model')} skipped</summary><ul>{items}</ul></details>"
    window = route.get("context_window") or 0
    meta = f"~{route.get('est_tokens', 0):,} / {window:,} tokens" if window else ""
    return _step("route", "🧭", f"Routed to <b>{_esc(route.get('model'))}</b>", meta, body)


def _tool_step(call: dict[str, Any]) -> str:
    ok = bool(call.get("ok"))
    args = call.get("arguments")
    outcome = call.get("result") if ok else call.get("error")
    if ok and call.get("name") == "update_ticket" and isinstance(args, dict):
        # Bookkeeping: the fields it set, in one line (the ticket below shows their values).
        fields = ", ".join(f"{k}={_short(v, 24)}" for k, v in args.items())
        lines = f"<div class='sb-io'><span class='sb-k'>set</span><code>{_esc(_short(fields, 160))}</code></div>"
    else:
        lines = (
            f"<div class='sb-io'><span class='sb-k'>args</span><code>{_esc(_short(args, 90))}</code></div>"
            f"<div class='sb-io'><span class='sb-k'>{'result' if ok else 'error'}</span>"
            f"<code>{_esc(_short(outcome, 140))}</code></div>"
        )
    body = (
        lines
        + f"<details><summary>full JSON</summary>{_pre({'arguments': args, 'result' if ok else 'error': outcome})}"
        "</details>"
    )
    meta = f"{float(call.get('duration_ms') or 0):.1f} ms"
    title = f"<b>{_esc(call.get('name'))}</b>" + ("" if ok else " failed")
    return _step("tool sb-ok" if ok else "tool sb-fail", "🔧" if ok else "⚠️", title, meta, body)


def _pending_step(name: str, raw_args: str) -> str:
    body = f"<div class='sb-io'><span class='sb-k'>args</span><code>{_esc(_short(raw_args, 90))}</code></div>"
    return _step("tool sb-pending", "⏳", f"<b>{_esc(name)}</b> running…", "", body)


def _value(value: Any) -> str:
    if value is None or value == "":
        return "—"
    if isinstance(value, dict) and ("id" in value or "email" in value):
        parts = [str(v) for v in (value.get("id"), value.get("email")) if v]
        return ", ".join(parts) or "—"
    if isinstance(value, dict) and "outcome" in value:
        return str(value["outcome"])
    return _short(value, 80)


def _ticket_step(changes: list[dict[str, Any]]) -> str:
    rows = []
    for change in changes:
        name = _esc(str(change.get("field", "")).replace("_", " "))
        if "added" in change or "removed" in change:
            items = [f"<li class='sb-add'>+ {_esc(_value(x))}</li>" for x in change.get("added") or ()]
            items += [f"<li class='sb-del'>− {_esc(_value(x))}</li>" for x in change.get("removed") or ()]
            rows.append(f"<div class='sb-change'><span class='sb-k'>{name}</span><ul>{''.join(items)}</ul></div>")
        else:
            before, after = _value(change.get("before")), _value(change.get("after"))
            rows.append(
                f"<div class='sb-change'><span class='sb-k'>{name}</span><s>{_esc(before)}</s> → "
                f"<b>{_esc(after)}</b></div>"
            )
    status = next((c for c in changes if c.get("field") == "status"), None)
    meta = f"status {_esc(status.get('after'))}" if status else ""
    return _step("ticket", "🎫", "Ticket changed", meta, "".join(rows))


def _cost_step(session: Session, turn: int, pricing: Pricing, plan: str) -> str:
    records = [u for u in session.usage if u.get("turn") == turn]
    summary = summarize(records, pricing, plan)
    row = summary.rows[0]
    purposes: dict[str, int] = {}
    for rec in records:
        purposes[str(rec.get("purpose", "answer"))] = purposes.get(str(rec.get("purpose", "answer")), 0) + 1
    ordered = sorted(purposes, key=lambda p: _PURPOSES.index(p) if p in _PURPOSES else len(_PURPOSES))
    why = ", ".join(plural(purposes[p], p.replace("_", " ")) for p in ordered)
    latency = sum(float(r.get("latency_ms") or 0) for r in records)
    ttft = next((r.get("ttft_ms") for r in records if r.get("ttft_ms") is not None), None)
    tokens = row.prompt_tokens + row.completion_tokens
    lines = [
        f"<div>{plural(tokens, 'token')} ({row.prompt_tokens:,} in, {row.completion_tokens:,} out) · "
        f"{latency / 1000:.2f} s" + (f" · first token {ttft:.0f} ms" if ttft is not None else "") + "</div>"
    ]
    prices = [f"<b>{money(row.flat_cost)}</b> flat on Oxlo {_esc(summary.plan.title())}"]
    for p, cost in row.token_costs.items():
        name = _esc(summary.provider_names.get(p, p))
        if cost is None:
            prices.append(f"{name} no price")
            continue
        mark = "≈" if row.estimated.get(p) else ""
        partial = " (partial)" if row.unpriced.get(p) else ""
        prices.append(f"{mark}{money(cost)} {name}{partial}")
    lines.append(f"<div class='sb-prices'>{' · '.join(prices)}</div>")
    meta = f"{plural(row.requests, 'request')} ({_esc(why)})"
    return _step("cost", "💰", "Requests, tokens, cost", meta, "".join(lines))


def _ending_step(session: Session, turn: int, live: LiveTurn | None) -> str:
    answer = next((m for m in session.messages if m["role"] == "assistant" and m.get("turn") == turn), None)
    if answer is None:
        return _step("live", "⏳", "Answering…") if live is not None and live.turn == turn else ""
    if answer.get("stopped"):
        return _step("stopped", "⏹️", "Stopped by the customer", "", "What arrived before the stop is kept.")
    if answer.get("error"):
        return _step("error", "⚠️", "The turn failed", _esc(answer.get("error_kind") or ""), _esc(answer["error"]))
    return ""


def timeline_html(session: Session, value: Any, pricing: Pricing, plan: str, live: LiveTurn | None = None) -> str:
    """The agent view of the turn ``value`` names (a turn number as text, or ``LATEST``)."""
    turn = chosen_turn(session, value, live)
    if turn is None:
        return (
            "<div class='sb-empty'>Send a message or pick an example: each turn's route, tool calls, ticket "
            "changes and cost appear here, step by step.</div>"
        )
    steps: list[str] = []
    user = next((m for m in session.messages if m["role"] == "user" and m.get("turn") == turn), None)
    said = _short(user.get("content") or "", 120) if user else _short(live.user if live else "", 120)
    files = ", ".join(a.get("filename", "") for a in (user or {}).get("attachments") or ())
    head = f"Turn {turn}" + (f" of {turns(session, live)[-1]}" if turns(session, live)[-1] != turn else "")
    steps.append(
        f"<div class='sb-tl-head'><b>{head}</b> · <q>{_esc(said) or '(no text)'}</q>"
        + (f" <span class='sb-files'>📎 {_esc(files)}</span>" if files else "")
        + "</div>"
    )
    if route := next((r for r in session.routes if r.get("turn") == turn), None):
        steps.append(_route_step(route))
    for note in (m for m in session.messages if m["role"] == "notice" and m.get("turn") == turn):
        steps.append(_step("note", "ℹ️", "Note", "", _esc(_short(note.get("content"), 300))))
    steps += [_tool_step(c) for c in session.tool_calls if c.get("turn") == turn]
    if live is not None and live.turn == turn:
        steps += [_pending_step(name, args) for name, args in live.pending.values()]
    for entry in session.ticket_changes:
        if entry.get("turn") == turn and entry.get("changes"):
            steps.append(_ticket_step(entry["changes"]))
    if any(u.get("turn") == turn for u in session.usage):
        steps.append(_cost_step(session, turn, pricing, plan))
    steps.append(_ending_step(session, turn, live))
    total = summarize(session.usage, pricing, plan)
    if total.requests:
        steps.append(f"<div class='sb-tl-foot'>{headline(total)}</div>")
    return "<div class='sb-timeline'>" + "".join(s for s in steps if s) + "</div>"
