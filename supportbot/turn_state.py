"""One turn in flight: what prepare made and stream gathered, and what changes it midway.

``TurnState`` is the turn ``conversation.TurnRunner`` carries from prepare to commit. A turn can
change course twice without a new user message:

* a fallback: its model failed before any answer text (``routing.fallback``), so it runs once more
  on another model; the tool rounds it completed go along (their refunds and escalations happened,
  so they must not run twice, and the answer about them should not be lost), the route records
  ``fallback_from``, and the chat gets a notice;
* a pause: a call waits for a human (``supportbot.approval``); the session keeps what resuming
  needs, and ``resumed`` rebuilds the turn from it in a later event.

The ticket is brought up to date after the turn, inline (no request) or by extraction.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from supportbot import approval, memory
from supportbot.attachments.images import PreparedImage
from supportbot.errors import SupportbotError
from supportbot.events import (
    ApprovalRequested,
    Done,
    ErrorEvent,
    Event,
    FallbackStarted,
    Notice,
    RoundCompleted,
    RouteDecision,
    TextDelta,
    TicketUpdated,
    ToolCallFinished,
    UsageReported,
)
from supportbot.limits import NO_LIMIT, Budget
from supportbot.routing.catalog import Catalog, ModelInfo
from supportbot.routing.fallback import failure_label, next_fallback
from supportbot.session import Session, new_conversation_id
from supportbot.storage.sandbox import Sandbox
from supportbot.ticket.extraction import extract_ticket
from supportbot.ticket.record import Ticket, build_inline


@dataclass
class TurnState:
    """One turn in flight: what prepare made, what stream gathered."""

    number: int
    decision: RouteDecision
    model: ModelInfo
    history: list[dict[str, Any]]  # the memory the turn starts from (maybe compacted)
    sent: list[dict[str, Any]]  # that memory as the request carries it (earlier logs as their analysis)
    user_msg: dict[str, Any]
    images: list[PreparedImage]
    notes: list[str] = field(default_factory=list)
    sandbox: Sandbox | None = None  # the conversation's view of the demo shop
    budget: Budget = NO_LIMIT  # the visitor's spending bounds; every model request draws on it
    headers: dict[str, str] = field(default_factory=dict)  # sent with each request (a simulated failure)
    image_paths: list[Path] = field(default_factory=list)  # to prepare the images again for a fallback model
    answer: str = ""
    carried: list[dict[str, Any]] = field(default_factory=list)  # tool rounds an earlier run of the turn completed
    rounds: list[dict[str, Any]] = field(default_factory=list)  # tool rounds this run completed
    steps: int = 0  # tool rounds the turn completed, carried ones included
    fallback_from: str | None = None  # the model that failed this turn, once it fell back
    paused: ApprovalRequested | None = None
    done: Done | None = None

    def agent_history(self) -> list[dict[str, Any]]:
        """What the agent is given: the memory, the customer's message, the rounds already completed."""
        return [*self.sent, self.user_msg, *self.carried]

    def added(self, ok: bool) -> list[dict[str, Any]]:
        """What the turn adds to memory after its user message (see ``memory.remember``)."""
        mine = self.done.messages if ok and self.done is not None else self.rounds
        return [*self.carried, *mine]


# --- claiming a session, forking it, recording what happens ----------------------------------------------


def claim(session: Session) -> None:
    """Mark ``session`` busy, or SupportbotError when a turn already runs in it."""
    # Checked and set before the first await: two turns at once would each overwrite the other's history.
    if session.busy:
        raise SupportbotError("This conversation is still answering the previous message: wait for it, or press stop.")
    session.busy = True


def fork(session: Session) -> str | None:
    """A reloaded or shared conversation continues under a new id, so two people who open the same
    link never overwrite each other's stored turns; returns the id it continues, if it forked."""
    if not session.loaded:
        return None
    fork_of = session.conversation_id
    session.forked_from, session.conversation_id, session.loaded = fork_of, new_conversation_id(), False
    return fork_of


def record(session: Session, turn: TurnState, event: Event) -> bool:
    """Keep what ``event`` says in the session and the turn; True when it must be saved at once (a tool ran)."""
    if isinstance(event, ToolCallFinished):
        session.tool_calls.append({"turn": turn.number, **event.to_json()})
        return True
    if isinstance(event, RoundCompleted):
        turn.rounds += event.messages
        turn.steps += 1
    elif isinstance(event, UsageReported):
        session.usage.append(event.record.to_json())
    elif isinstance(event, Notice):
        session.messages.append({"role": "notice", "content": event.text, "turn": turn.number})
    elif isinstance(event, ErrorEvent):
        fallback_failed(session, turn, event)
        failed = {"content": turn.answer, "error": event.message, "error_kind": event.kind}
        session.messages.append({"role": "assistant", **failed, "turn": turn.number, "model": turn.model.id})
    elif isinstance(event, TextDelta):
        turn.answer += event.text
    elif isinstance(event, ApprovalRequested):
        turn.paused = event
    elif isinstance(event, Done):
        turn.done = event
    return False


# --- fallback -------------------------------------------------------------------------------------


def fallback_for(turn: TurnState, catalog: Catalog, cooling: dict[str, str]) -> ModelInfo | None:
    """The model to run a failed turn on: once a turn, and only while no answer text was shown."""
    if turn.fallback_from is not None or turn.answer:
        return None
    return next_fallback(
        turn.decision,
        catalog,
        images=bool(turn.images),
        tools=bool(turn.carried or turn.rounds),  # tool messages go along: the new model must take tools
        exclude={turn.model.id, turn.decision.model},
        cooling=cooling,
    )


def _route(session: Session, number: int) -> dict[str, Any]:
    return next((r for r in reversed(session.routes) if r.get("turn") == number), {})


def switch(session: Session, turn: TurnState, error: ErrorEvent, to: ModelInfo) -> FallbackStarted:
    """Move ``turn`` to ``to``: completed rounds are carried, the route and the chat say so (the caller
    prepares images again when the new model wants another size, and saves)."""
    failed, label = turn.model, failure_label(error.kind, error.status)
    turn.fallback_from, turn.model = failed.id, to
    turn.carried, turn.rounds = [*turn.carried, *turn.rounds], []
    route = _route(session, turn.number)
    if route:
        route.update(model=to.id, context_window=to.context_window, fallback_from=failed.id)
        route["reason"] = f"{route['reason']} {failed.name} failed ({label}); answered by {to.name}."
    text = f"{failed.name} failed ({label}), so {to.name} answers instead. {error.message}"
    session.messages.append({"role": "notice", "content": text, "turn": turn.number})
    return FallbackStarted(failed.id, to.id, error.kind, error.status, text)


def fallback_failed(session: Session, turn: TurnState, error: ErrorEvent) -> None:
    """The fallback model failed too: the route stops saying it answered."""
    route = _route(session, turn.number)
    if route and turn.fallback_from is not None:
        said = f"; answered by {turn.model.name}."
        route["reason"] = route["reason"].replace(
            said, f"; {turn.model.name} failed too ({failure_label(error.kind, error.status)})."
        )


# --- pause and resume ------------------------------------------------------------------------------


def pending_record(turn: TurnState) -> dict[str, Any]:
    """What the session keeps for a turn paused for approval (screenshots as their note)."""
    assert turn.paused is not None
    user = memory.storable(turn.user_msg, turn.images)
    messages = [user, *turn.carried, *turn.rounds, *turn.paused.partial]
    return approval.record(turn.paused, turn=turn.number, model=turn.model.id, text=turn.answer, messages=messages)


def resumed(session: Session, pending: dict[str, Any], catalog: Catalog) -> tuple[TurnState, ApprovalRequested]:
    """The paused turn rebuilt from the session's record, and the pause to resume from."""
    user_msg, carried, paused = approval.unpack(pending)
    route = _route(session, pending["turn"])
    decision = RouteDecision(
        route.get("model", pending["model"]),
        route.get("category", ""),
        route.get("reason", ""),
        tuple(route.get("fallbacks") or ()),
        est_tokens=route.get("est_tokens", 0),
        context_window=route.get("context_window", 0),
        rule=route.get("rule", ""),
    )
    turn = TurnState(
        pending["turn"],
        decision,
        catalog.get(pending["model"]),
        session.history,
        memory.sent_history(session.history),
        user_msg,
        [],
        answer=pending.get("text") or "",
        carried=carried,
        steps=paused.steps - 1,  # the paused round is not complete yet
        fallback_from=route.get("fallback_from"),
    )
    return turn, paused


# --- the ticket after a turn ------------------------------------------------------------------------


def inline_ticket(session: Session) -> Ticket:
    """The ticket from tool facts, the model's update_ticket fields and the text: no request."""
    previous = Ticket.model_validate(session.ticket) if session.ticket else None
    return build_inline(
        conversation_id=session.conversation_id,
        messages=memory.chat_messages(session),
        tool_calls=session.tool_calls,
        ticket_fields=session.ticket_fields,
        previous=previous,
    )


async def extracted_ticket(
    session: Session, client: Any, model: ModelInfo, max_tokens: int, turn: int, budget: Budget
) -> AsyncIterator[UsageReported | TicketUpdated | Ticket]:
    """Ticket extraction by the model (one or two requests): their usage, then the new ticket, or a
    TicketUpdated carrying the error (the session keeps its ticket)."""
    # Models without JSON-schema output get JSON mode with the schema in the prompt (see ticket.extraction).
    result = await extract_ticket(
        client,
        model,
        conversation_id=session.conversation_id,
        messages=memory.chat_messages(session),
        tool_calls=session.tool_calls,
        max_tokens=max_tokens,
        turn=turn,
        budget=budget,
    )
    for record in result.usage:
        session.usage.append(record.to_json())
        yield UsageReported(record)
    session.ticket_error = result.error
    yield TicketUpdated(session.ticket, error=result.error) if result.ticket is None else result.ticket
