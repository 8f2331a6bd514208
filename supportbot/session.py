"""One user's conversation: everything a turn adds, kept per session (never global)."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from typing import Any


def new_conversation_id() -> str:
    """An unguessable id, safe in a URL (``?c=<id>``)."""
    return secrets.token_urlsafe(16)


@dataclass(eq=False)  # compared by identity: the UI keys its render cache on the session object
class Session:
    """A conversation's state. ``history`` is what the model sees (OpenAI messages,
    no system prompt); ``messages`` is the readable transcript for people and /session."""

    conversation_id: str = field(default_factory=new_conversation_id)
    history: list[dict[str, Any]] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    routes: list[dict[str, Any]] = field(default_factory=list)
    usage: list[dict[str, Any]] = field(default_factory=list)
    ticket: dict[str, Any] = field(default_factory=dict)
    ticket_fields: dict[str, Any] = field(default_factory=dict)  # set by the update_ticket tool
    ticket_error: str | None = None  # the last extraction failure, shown in the Ticket panel
    # What each turn changed in the ticket: [{"turn", "changes": [{"field", "before", "after"} | {"field",
    # "added", "removed"}]}] (see ticket.record.ticket_changes), for the agent view's timeline.
    ticket_changes: list[dict[str, Any]] = field(default_factory=list)
    forked_from: str | None = None  # the stored conversation this one continues (a reload or shared link)
    pending_call: dict[str, Any] | None = None  # a call awaiting a human's approval (see supportbot.approval)
    loaded: bool = field(default=False, repr=False, compare=False)  # read from storage: the next turn forks
    busy: bool = field(default=False, repr=False, compare=False)  # a turn is running
    turn: int = 0

    def to_json(self) -> dict[str, Any]:
        """The /session payload; field names are a public promise."""
        return {
            "conversation_id": self.conversation_id,
            "messages": [_public(m) for m in self.messages],
            "tool_calls": self.tool_calls,
            "routes": self.routes,
            "usage": self.usage,
            "ticket": self.ticket,
            "ticket_error": self.ticket_error,
            "ticket_changes": self.ticket_changes,
            "forked_from": self.forked_from,
            "turns": self.turn,
            "pending_call": pending_view(self.pending_call),
        }


def pending_view(pending: dict[str, Any] | None) -> dict[str, Any] | None:
    """A call awaiting approval as /session shows it: ``call_id``, ``name``, ``arguments``, ``turn``, ``model``
    (not the model's messages kept to resume the turn)."""
    if not pending:
        return None
    arguments: Any = pending["arguments"]
    try:
        arguments = json.loads(arguments) if isinstance(arguments, str) and arguments.strip() else arguments
    except json.JSONDecodeError:
        pass  # shown as the model wrote it
    return {k: pending[k] for k in ("call_id", "name", "turn", "model")} | {"arguments": arguments}


def _public(message: dict[str, Any]) -> dict[str, Any]:
    """A transcript message without server-side details (where an upload sits on disk)."""
    if not any("local_file" in a for a in message.get("attachments", ())):
        return message
    return message | {
        "attachments": [{k: v for k, v in a.items() if k != "local_file"} for a in message["attachments"]]
    }
