"""A conversation written back as a scenario: its turns, and expectations that are what happened.

For the UI's "Save as scenario" and ``/save_scenario``; the tester trims what should not be
checked. Per turn: the customer's text, attachments that live under ``assets/`` (others are
listed in a comment, to be copied there), a forced model when the person chose one, the route
category, and every tool call with its arguments (``update_ticket`` by name only: its arguments
are the model's own wording, checked through the ticket instead). The last turn also expects the
ticket's stable fields (category, status, priority, language, sentiment, order ids, customer).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from supportbot.config import ASSETS_DIR
from supportbot.session import Session

# Ticket fields that say what the conversation was; ids, free text and the action log vary run to run.
TICKET_FIELDS = ("category", "status", "priority", "language", "sentiment", "order_ids", "customer")
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
SIMULATED = "🧪 Simulated"  # how ``client.Simulation.describe`` starts its note in the chat


def scenario_from_session(session: Session, *, name: str | None = None) -> str:
    """TOML scenario text for ``session`` (loads with ``supportbot.qa.scenario.load_text``)."""
    cid = session.conversation_id
    lines = [
        f"# Saved from conversation {cid}: the expectations are what happened. Trim what should not be checked.",
        f"name = {_value(name or f'Saved conversation {cid[:8]}')}",
        "",
    ]
    users = [m for m in session.messages if m.get("role") == "user"]
    for i, message in enumerate(users):
        turn = message.get("turn")
        lines += _turn(session, message, turn, last=i == len(users) - 1)
    return "\n".join(lines).rstrip() + "\n"


def _turn(session: Session, message: dict[str, Any], turn: Any, *, last: bool) -> list[str]:
    out = ["[[turns]]", f"text = {_value(message.get('content') or '')}"]
    shipped, elsewhere = [], []
    for a in message.get("attachments") or ():
        rel = _asset_path(a.get("local_file"))
        if rel:
            shipped.append(rel)
        else:
            elsewhere.append(a.get("filename") or "?")
    if shipped:
        out.append(f"attachments = {_value(shipped)}")
    for filename in elsewhere:
        out.append(f"# attached {filename!r}: copy it under assets/ and list it in attachments")
    route = next((r for r in session.routes if r.get("turn") == turn), {})
    chosen = str(route.get("rule", "")).startswith("manual")  # the person picked the model
    forced = route.get("switched_from") or (route.get("model") if chosen else None)
    if forced:
        out.append(f"model = {_value(forced)}")
    out += ["", "[turns.expect]"]
    notices = (m for m in session.messages if m.get("turn") == turn and m.get("role") == "notice")
    if any(str(m.get("content", "")).startswith(SIMULATED) for m in notices):
        # A scenario cannot simulate: what failed here on purpose answers when the scenario runs.
        out.append("# this turn's failure was simulated in the QA tab: expect what the turn should do without it")
    answers = [m for m in session.messages if m.get("turn") == turn and m.get("role") == "assistant"]
    if answers and answers[-1].get("error"):
        out.append("answered = false")
    if route.get("category"):
        out.append(f"route = {_value({'category': route['category']})}")
    if last and session.ticket:
        ticket = {k: session.ticket[k] for k in TICKET_FIELDS if session.ticket.get(k) is not None}
        out.append(f"ticket = {_value(ticket)}")
    for call in (c for c in session.tool_calls if c.get("turn") == turn):
        out += ["", "[[turns.expect.tools]]", f"name = {_value(call['name'])}"]
        args = call.get("arguments")
        if call["name"] != "update_ticket" and isinstance(args, dict) and args:
            out.append(f"arguments = {_value(args)}")
        if not call.get("ok", True):
            out.append("ok = false")
    out.append("")
    return out


def _asset_path(local_file: Any) -> str | None:
    if not local_file:
        return None
    try:
        return Path(local_file).resolve().relative_to(ASSETS_DIR.resolve()).as_posix()
    except ValueError:
        return None


def _value(v: Any) -> str:
    """A TOML value on one line (inline tables and arrays); None entries are left out: TOML has no null."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else ("nan" if math.isnan(v) else ("inf" if v > 0 else "-inf"))
    if isinstance(v, dict):
        items = [f"{_key(k)} = {_value(x)}" for k, x in v.items() if x is not None]
        return "{ " + ", ".join(items) + " }" if items else "{}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v if x is not None) + "]"
    # JSON's string escapes are TOML's, except that TOML also wants DEL escaped.
    return json.dumps(str(v), ensure_ascii=False).replace("\x7f", "\\u007f")


def _key(k: Any) -> str:
    k = str(k)
    return k if _BARE_KEY.fullmatch(k) else _value(k)
