"""Compare mode's pure parts: one side's state, its turn as JSON (``/compare``), and its stats table. No Gradio.

A side is a conversation of its own (its own ``Session``, so its own sandbox of the demo shop): a refund
on one side never makes the other answer "already refunded", and neither touches the visitor's main
conversation. Text from a visitor, a model or a tool is escaped before it reaches HTML.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any

from supportbot.pricing import Pricing, summarize
from supportbot.session import Session
from supportbot.ui.render import LiveTurn
from supportbot.ui.usage_view import money, plural

SIDES = ("a", "b")


@dataclass(eq=False)
class Side:
    """One column: its conversation, the model picked for its last turn, and how that turn went."""

    session: Session = field(default_factory=Session)
    selected: str = "auto"
    latency_ms: float | None = None  # the last turn's wall time, start to end
    error: str | None = None  # the last turn was refused before it started (a limit, bad input)
    live: LiveTurn | None = None  # the turn streaming now


@dataclass(eq=False)
class CompareState:
    """A visitor's comparison: two sides, one comparison running at a time."""

    a: Side = field(default_factory=Side)
    b: Side = field(default_factory=Side)
    busy: bool = False

    def sides(self) -> tuple[Side, Side]:
        """(A, B)."""
        return self.a, self.b


def _turn_items(items: list[dict[str, Any]], turn: int) -> list[dict[str, Any]]:
    return [i for i in items if i.get("turn") == turn]


def side_json(side: Side, pricing: Pricing, plan: str) -> dict[str, Any]:
    """The side's last turn for ``/compare``: model, answer, tool calls, latency, tokens, requests, cost, error."""
    session, turn = side.session, side.session.turn
    route = next((r for r in reversed(session.routes) if r.get("turn") == turn), None) if turn else None
    answer = next((m for m in reversed(session.messages) if m["role"] == "assistant" and m.get("turn") == turn), None)
    usage = _turn_items(session.usage, turn) if turn else []
    summary = summarize(usage, pricing, plan)
    calls = [
        {k: c.get(k) for k in ("name", "arguments", "ok", "result", "error", "duration_ms")}
        for c in _turn_items(session.tool_calls, turn)
    ]
    error = side.error or (answer or {}).get("error")
    return {
        "selected": side.selected,
        "model": (route or {}).get("model") if not side.error else None,
        "fallback_from": (route or {}).get("fallback_from") if not side.error else None,
        "turn": turn,
        "answer": "" if side.error or answer is None else str(answer.get("content") or ""),
        "tool_calls": [] if side.error else calls,
        "latency_ms": None if side.latency_ms is None else round(side.latency_ms, 1),
        "tokens": {
            "prompt": summary.prompt_tokens,
            "completion": summary.completion_tokens,
            "total": summary.prompt_tokens + summary.completion_tokens,
        },
        "requests": summary.requests,
        "cost": {"plan": summary.plan, "flat_usd": summary.flat_cost, "token_usd": dict(summary.token_costs)},
        "stopped": bool((answer or {}).get("stopped")),
        "error": error,
    }


def _cell(text: str) -> str:
    return f"<td>{text}</td>"


def stats_html(side: Side, pricing: Pricing, plan: str, model_name: Any = None) -> str:
    """The side's stats under its chat: model, latency, tokens in/out, requests and cost of its last turn,
    and the whole comparison's totals once it has several turns."""
    name = model_name or (lambda model_id: model_id)
    if side.live is not None:
        return "<div class='sb-cmp-stats'>⏳ answering…</div>"
    if side.session.turn == 0 and side.error is None:
        return "<div class='sb-cmp-stats'>No turn yet.</div>"
    data = side_json(side, pricing, plan)
    if data["error"] and data["model"] is None:
        return f"<div class='sb-cmp-stats sb-cmp-error'>⚠️ {html.escape(str(data['error']))}</div>"
    whole = summarize(side.session.usage, pricing, plan)
    model = html.escape(str(name(data["model"]) if data["model"] else "—"))
    if data["fallback_from"]:
        model += f" <small>(after {html.escape(str(name(data['fallback_from'])))} failed)</small>"
    latency = "—" if data["latency_ms"] is None else f"{data['latency_ms'] / 1000:.2f} s"
    tokens = data["tokens"]
    priced = [c for c in data["cost"]["token_usd"].values() if c is not None]
    at_tokens = f" · {money(min(priced))}–{money(max(priced))} at token prices" if priced else ""
    # One metric a row: two columns fit a narrow panel, six would not.
    several = side.session.turn > 1
    total_head = f"<th>{plural(side.session.turn, 'turn')}</th>" if several else ""
    head = f"<tr><th></th><th>this turn</th>{total_head}</tr>"
    table = [
        ("model", model, ""),
        ("latency", latency, ""),
        (
            "tokens in / out",
            f"{tokens['prompt']:,} / {tokens['completion']:,}",
            f"{whole.prompt_tokens:,} / {whole.completion_tokens:,}",
        ),
        ("requests", f"{data['requests']:,}", f"{whole.requests:,}"),
        ("cost", f"{money(data['cost']['flat_usd'])} flat{at_tokens}", f"{money(whole.flat_cost)} flat"),
    ]
    rows = [head] + [
        f"<tr><th>{label}</th>{_cell(now)}{_cell(total) if several else ''}</tr>" for label, now, total in table
    ]
    flag = ""
    if data["error"]:
        flag = f"<div class='sb-cmp-error'>⚠️ {html.escape(str(data['error']))}</div>"
    elif data["stopped"]:
        flag = "<div>⏹️ Stopped.</div>"
    plan_note = f"<div class='sb-sub'>Flat price on Oxlo {html.escape(plan.title())}.</div>"
    return f"<div class='sb-cmp-stats'><table>{''.join(rows)}</table>{flag}{plan_note}</div>"
