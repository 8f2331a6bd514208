"""A call awaiting a human's approval, as the Session keeps it (``Session.pending_call``).

When the agent pauses before a tool SUPPORTBOT_CONFIRM_TOOLS names, the turn's event ends and the
session keeps what resuming needs: the call (tool name, raw arguments, call id), the round's later
calls, how many tool rounds the turn has begun, the model, any text already shown, and the turn's
messages so far (the customer's message, screenshots as their text note, then every tool round
including the paused one as far as it got). It is stored with the conversation, so it survives a
reload (``?c=``); it is never exported, and an import carrying one is refused.

While a call waits, a new message is refused with a message naming the call: the customer's next
words should not silently decide a refund, and a denial they did not choose would be just as wrong.
"""

from __future__ import annotations

import json
from typing import Any

from supportbot.errors import SupportbotError
from supportbot.events import ApprovalRequested
from supportbot.session import Session

_YES = frozenset({"yes", "y", "true", "1", "approve", "approved"})
_NO = frozenset({"no", "n", "false", "0", "deny", "denied"})


def record(event: ApprovalRequested, *, turn: int, model: str, text: str, messages: list[dict[str, Any]]) -> dict:
    """What the session stores for a paused turn; ``messages`` is the turn so far, ending with ``event.partial``."""
    return {
        "call_id": event.call_id,
        "name": event.name,
        "arguments": event.arguments,
        "turn": turn,
        "model": model,
        "steps": event.steps,
        "text": text,
        "queued": event.queued,
        "messages": messages,
    }


def unpack(pending: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]], ApprovalRequested]:
    """(the customer's message, the rounds completed before the paused one, the pause) from a stored record."""
    messages = pending["messages"]
    start = max(i for i, m in enumerate(messages) if m.get("role") == "assistant" and m.get("tool_calls"))
    paused = ApprovalRequested(
        pending["call_id"],
        pending["name"],
        pending["arguments"],
        list(pending.get("queued") or []),
        messages[start:],
        pending["steps"],
    )
    return messages[0], messages[1:start], paused


def describe(pending: dict[str, Any]) -> str:
    """'request_refund (call_1_0) with {"order_id": "48258", ...}', cut short for a message."""
    args = pending["arguments"] if isinstance(pending["arguments"], str) else json.dumps(pending["arguments"])
    args = args if len(args) <= 120 else args[:119] + "…"
    return f"{pending['name']} ({pending['call_id']}) with {args}"


def refuse_new_message(session: Session) -> None:
    """SupportbotError naming the call when one awaits approval: it must be decided before the next message."""
    if session.pending_call:
        raise SupportbotError(
            f"A call awaits a human agent's approval: {describe(session.pending_call)}. Approve or deny it first "
            "(the buttons under the chat, or /approve with its call id); your message is kept."
        )


def awaiting(session: Session, call_id: Any) -> dict[str, Any]:
    """The pending call ``call_id`` names; SupportbotError when none waits or the id is another's."""
    pending = session.pending_call
    if not pending:
        raise SupportbotError("No call awaits approval in this conversation.")
    if call_id != pending["call_id"]:
        shown = str(call_id)[:60]
        raise SupportbotError(f"Call {shown!r} does not await approval; {describe(pending)} does.")
    return pending


def decision(value: Any) -> bool:
    """True for yes/approve, False for no/deny (a bool, or a word in any case); SupportbotError otherwise."""
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower() if isinstance(value, str | int) else ""
    if word in _YES:
        return True
    if word in _NO:
        return False
    raise SupportbotError("Answer yes (approve) or no (deny).")
