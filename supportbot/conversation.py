"""One turn, end to end: prepare -> stream -> commit.

* prepare: read the attachments (and any earlier log the message asks about), route the
  turn on the history as it will be sent (earlier logs as their analysis), fork a reloaded
  conversation, record the customer's message and the notices (a reduced or cut-off log,
  compacted history);
* stream: run the agent and record each event in the session as it arrives; when the model
  fails before any answer text (``routing.fallback``), run the turn once more on the next
  fallback, keeping any completed tool rounds (their refunds happened: they must not run twice,
  and the answer about them should not be lost);
* commit: update the model's memory by the one rule in ``supportbot.memory``, then the
  ticket, then persist. A turn paused for approval keeps its state in the session instead
  (``supportbot.approval``); ``resume`` finishes it in a new event.

This is the layer the UI calls. It knows nothing of Gradio (the UI passes a plain progress
callback) and nothing of the SDK beyond the agent and ticket extraction. A failed or stopped
turn never corrupts the history. Work that grows with the input (reading files, routing,
tickets, saves) runs in worker threads; images decode on their own few.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from supportbot import approval, housekeeping, memory
from supportbot.agent import SYSTEM_PROMPT
from supportbot.attachments.images import DECODES_AT_ONCE, PreparedImage, prepare_image
from supportbot.attachments.intake import Attachments, log_limits, refuse_empty, sort_files
from supportbot.attachments.logs import LogFile, open_log
from supportbot.attachments.message import fence_logs, image_meta, user_message, with_images
from supportbot.client import Simulation
from supportbot.errors import SupportbotError
from supportbot.events import (
    ErrorEvent,
    Event,
    FallbackStarted,
    Notice,
    RouteChosen,
    RouteDecision,
    TicketUpdated,
)
from supportbot.limits import NO_LIMIT, Budget, cap_turn
from supportbot.routing import tokens
from supportbot.routing.catalog import ModelInfo
from supportbot.routing.fallback import FALLBACK_KINDS, demote, failure_label
from supportbot.routing.router import TurnFacts, route
from supportbot.services import Services
from supportbot.session import Session
from supportbot.ticket.record import Ticket, ticket_changes
from supportbot.tools import REGISTRY, ToolContext
from supportbot.turn_state import (
    TurnState,
    claim,
    extracted_ticket,
    fallback_for,
    fork,
    inline_ticket,
    pending_record,
    record,
    resumed,
    switch,
)
from supportbot.vocabulary import cut_off_note

Progress = Callable[[float, str], None]


class TurnRunner:
    """Runs turns for sessions; one per app, safe to share (all state is in the Session)."""

    def __init__(self, services: Services) -> None:
        self.s = services
        self._last_purge = float("-inf")
        self._decoder = ThreadPoolExecutor(DECODES_AT_ONCE, thread_name_prefix="supportbot-decode")
        # The system prompt and tool schemas never change: estimate them once, not every turn.
        self._overhead_tokens = tokens.estimate_tokens(SYSTEM_PROMPT) + tokens.estimate_tools(REGISTRY.schemas())

    def purge_expired(self, every_s: float = 3600.0) -> int:
        """Apply retention to every table at most once per ``every_s`` (see ``supportbot.housekeeping``)."""
        if time.monotonic() - self._last_purge < every_s:
            return 0
        self._last_purge = time.monotonic()
        return sum(housekeeping.purge(self.s).values())

    def load(self, conversation_id: str) -> Session | None:
        """A stored conversation, shown as stored; its next turn continues under a new id."""
        return self.s.history.load(conversation_id)

    def facts(
        self, session: Session, text: str, found: Attachments, sent: list[dict[str, Any]] | None = None
    ) -> TurnFacts:
        """What the router needs for this turn; ``sent`` is the history as the request carries it
        (``memory.sent_history``, the default)."""
        sent = memory.sent_history(session.history) if sent is None else sent
        return TurnFacts(
            text=text,
            images=len(found.images),
            log_tokens=sum(log.est_tokens for log in found.logs),
            history_tokens=tokens.estimate_messages(sent),
            overhead_tokens=self._overhead_tokens,
            output_tokens=self.s.settings.max_output_tokens,
            history=[
                m["content"] for m in session.messages if m["role"] == "user" and isinstance(m.get("content"), str)
            ],
        )

    def decide(
        self,
        session: Session,
        text: str,
        found: Attachments,
        selected: str | None,
        sent: list[dict[str, Any]] | None = None,
    ) -> RouteDecision:
        """Route a turn (no request is made), models that failed in the last minutes tried last."""
        decision = route(self.facts(session, text, found, sent), self.s.catalog, self.s.policy, selected)
        return demote(decision, self.s.catalog, self.s.cooldown.cooling(), images=bool(found.images))

    async def run(
        self,
        session: Session,
        text: str,
        files: list[str | Path] | None = None,
        *,
        selected: str | None = None,
        ticket_mode: str | None = None,
        progress: Progress | None = None,
        budget: Budget = NO_LIMIT,
        simulate: Simulation | None = None,
    ) -> AsyncIterator[Event]:
        """Run one turn and yield its events; ``session`` is updated as they happen.

        Every model request of the turn draws on ``budget``; a turn that could not make one is
        refused before it starts (LimitReached), like bad input: the session is untouched. ``simulate``
        (offline engine only) sends every request of the turn with a failure or delay the engine acts out."""
        text = (text or "").strip()
        refuse_empty(text, files)
        approval.refuse_new_message(session)
        mode = self._ticket_mode(ticket_mode)
        headers = self.s.clients.headers_for(simulate)  # refused here, before anything changed, unless offline
        await budget.check()
        claim(session)
        report = progress or (lambda _f, _d: None)
        try:
            turn = await self._prepare(session, text, list(files or []), selected, report)
            turn.budget, turn.headers = budget, headers
            if simulate is not None and headers:  # the chat (and the stored turn) say what was simulated
                turn.notes.append(simulate.describe())
                session.messages.append({"role": "notice", "content": turn.notes[-1], "turn": turn.number})
            yield RouteChosen(turn.decision)
            for note in turn.notes:
                yield Notice(note)
            async for event in self._drive(session, turn, mode):
                yield event
        finally:
            session.busy = False

    async def resume(
        self,
        session: Session,
        call_id: str,
        approved: bool,
        *,
        ticket_mode: str | None = None,
        budget: Budget = NO_LIMIT,
    ) -> AsyncIterator[Event]:
        """Approve (run) or deny the call the session's last turn paused at, and finish that turn.

        A new event of its own: the pause held nothing. A reloaded conversation forks first, as for a
        new message, so two people approving from one link never share a sandbox or a stored turn."""
        pending = approval.awaiting(session, call_id)
        mode = self._ticket_mode(ticket_mode)
        if pending["model"] not in self.s.catalog:
            raise SupportbotError(f"The paused call's model {pending['model']!r} is no longer in the catalog.")
        await budget.check()
        claim(session)
        try:
            fork_of = fork(session)
            sandbox = await asyncio.to_thread(self.s.store.sandbox, session.conversation_id, fork_of=fork_of)
            turn, paused = await asyncio.to_thread(resumed, session, pending, self.s.catalog)
            turn.sandbox, turn.budget = sandbox, budget
            session.pending_call = None  # taken: approving the same call twice is refused
            await asyncio.to_thread(self.s.history.save, session)

            def first(ctx: ToolContext) -> AsyncIterator[Event]:
                history = turn.agent_history()  # the memory, the customer's message, the rounds before the pause
                return self.s.agent.resume_turn(
                    history, paused, approved, turn.model, ctx, turn=turn.number, budget=budget
                )

            async for event in self._drive(session, turn, mode, first):
                yield event
        finally:
            session.busy = False

    def _ticket_mode(self, asked: str | None) -> str:
        mode = asked or self.s.settings.ticket_mode
        if mode == "extraction" and not self.s.settings.extraction_allowed:
            raise SupportbotError(
                "Ticket extraction mode is switched off on this app (SUPPORTBOT_ALLOW_EXTRACTION): it costs one or "
                "two extra requests a turn. Choose the inline ticket mode."
            )
        return mode

    async def _drive(self, session: Session, turn: TurnState, mode: str, first: Any = None) -> AsyncIterator[Event]:
        """Stream the turn, then commit it (or record the stop)."""
        try:
            async for event in self._stream(session, turn, first):
                yield event
        except (asyncio.CancelledError, GeneratorExit):
            await self._commit_stopped(session, turn)
            raise
        async for event in self._commit(session, turn, mode):
            yield event

    # --- prepare ----------------------------------------------------------------------------

    async def _prepare(
        self, session: Session, text: str, files: list[str | Path], selected: str | None, progress: Progress
    ) -> TurnState:
        progress(0.05, "Reading attachments")
        text, found = await asyncio.to_thread(sort_files, files, text, self.s.settings)
        # A log is sent once: earlier logs travel as their analysis, unless this message asks about
        # one (then it goes along again, as an attachment) or attaches it again.
        resent = await asyncio.to_thread(self._logs_asked_about, session, text, found)
        found.logs += resent
        sent = await asyncio.to_thread(memory.sent_history, session.history)
        # Estimating the history and reading the text for keywords grow with the input: off the loop.
        decision = await asyncio.to_thread(self.decide, session, text, found, selected, sent)
        if (cap := self.s.settings.max_input_tokens_per_turn) and decision.est_tokens > cap:
            facts = await asyncio.to_thread(self.facts, session, text, found, sent)
            decision = cap_turn(decision, facts, cap, self.s.policy.safety_margin)
        model = self.s.catalog.get(decision.model)
        images = [await self._prepared(path, model) for path in found.images]
        progress(0.3, "Preparing logs")
        log_blocks, log_meta = await asyncio.to_thread(fence_logs, found.logs, decision.reduce_logs_to)
        for info in log_meta[len(log_meta) - len(resent) :]:
            info["resent"] = True
        # Nothing above changed the session: bad input leaves it as it was.
        fork_of = fork(session)
        # The conversation's own view of the demo shop; a fork starts from a copy of its original's.
        sandbox = await asyncio.to_thread(self.s.store.sandbox, session.conversation_id, fork_of=fork_of)
        session.turn += 1
        number = session.turn
        attachments = [image_meta(im, path) for im, path in zip(images, found.images, strict=True)] + log_meta
        session.messages.append({"role": "user", "content": text, "attachments": attachments, "turn": number})
        notes = [cut_off_note(m["filename"], m["lines"]) for m in log_meta if m.get("cut_off")]
        notes += [
            f'The log "{log.filename}" from earlier is sent again with this message: you asked about it.'
            for log in resent
        ]
        if any(m["reduced"] for m in log_meta):
            notes.append("Log reduced to fit: " + "; ".join(m["header"] for m in log_meta if m["reduced"]))
        history = session.history
        if decision.rule in ("compact", "manual_compact"):
            history, summary = await asyncio.to_thread(memory.compact, history, model)
            sent = await asyncio.to_thread(memory.sent_history, history)
            notes.append(f"Older turns were compacted into a summary to fit {model.name}:\n{summary}")
        for note in notes:
            session.messages.append({"role": "notice", "content": note, "turn": number})
        session.routes.append({"turn": number, **decision.to_json()})
        await asyncio.to_thread(self.s.history.save, session)
        progress(0.5, f"Asking {model.name}")
        user_msg = user_message(text, log_blocks, images)
        return TurnState(
            number, decision, model, history, sent, user_msg, images, notes, sandbox=sandbox, image_paths=found.images
        )

    def _logs_asked_about(self, session: Session, text: str, found: Attachments) -> list[LogFile]:
        """Earlier logs this message asks about (and does not attach again), opened from memory."""
        attached = {log.filename for log in found.logs}
        asked = memory.logs_asked_about(session.history, text)
        limits = log_limits(self.s.settings)
        return [open_log(body, name, limits) for name, body in asked.items() if name not in attached]

    def _image(self, path: Path, model: ModelInfo) -> PreparedImage:
        return prepare_image(
            path, path.name, max_bytes=self.s.settings.max_upload_mb * 2**20, max_edge=model.max_image_edge or 1792
        )

    async def _prepared(self, path: Path, model: ModelInfo) -> PreparedImage:
        # Decoded on their own few threads (as many as cores): a burst of large images waits its
        # turn there instead of filling the shared pool every save and ticket of every visitor uses.
        return await asyncio.get_running_loop().run_in_executor(self._decoder, self._image, path, model)

    # --- stream -----------------------------------------------------------------------------

    async def _stream(self, session: Session, turn: TurnState, first: Any = None) -> AsyncIterator[Event]:
        sandbox = turn.sandbox or self.s.store.sandbox(session.conversation_id)
        ctx = ToolContext(sandbox, session.conversation_id, memory.transcript(session), session.ticket_fields)
        events = first(ctx) if first else self._agent_run(turn, ctx)
        while events is not None:
            held: tuple[ErrorEvent, ModelInfo] | None = None
            async for event in events:
                if held is not None:
                    continue  # the failed run's Done: the turn goes on on another model
                if isinstance(event, ErrorEvent) and event.kind in FALLBACK_KINDS:
                    if not turn.headers:  # a simulated failure says nothing of the model: other visitors keep it
                        self.s.cooldown.failed(turn.model.id, failure_label(event.kind, event.status))
                    if (fallback := fallback_for(turn, self.s.catalog, self.s.cooldown.cooling())) is not None:
                        held = (event, fallback)
                        continue
                if record(session, turn, event):  # a tool ran: what it did must survive a crash
                    await asyncio.to_thread(self.s.history.save, session)
                yield event
            events = None
            if held is not None:
                yield await self._switch(session, turn, *held)
                events = self._agent_run(turn, ctx)

    def _agent_run(self, turn: TurnState, ctx: ToolContext) -> AsyncIterator[Event]:
        history, steps = turn.agent_history(), turn.steps
        return self.s.agent.run_turn(
            history, turn.model, ctx, turn=turn.number, budget=turn.budget, steps_done=steps, headers=turn.headers
        )

    async def _switch(self, session: Session, turn: TurnState, error: ErrorEvent, to: ModelInfo) -> FallbackStarted:
        failed = turn.model
        event = switch(session, turn, error, to)
        if turn.images and to.max_image_edge != failed.max_image_edge:  # prepared again at the size it takes
            turn.images = [await self._prepared(path, to) for path in turn.image_paths]
            turn.user_msg = with_images(turn.user_msg, turn.images)
        await asyncio.to_thread(self.s.history.save, session)
        return event

    # --- commit -----------------------------------------------------------------------------

    async def _commit(self, session: Session, turn: TurnState, ticket_mode: str) -> AsyncIterator[Event]:
        done = turn.done
        assert done is not None, "the agent always ends a turn with Done"
        if turn.paused is not None:
            await self._commit_paused(session, turn)
            return
        if done.ok:
            session.messages.append(
                {"role": "assistant", "content": turn.answer, "turn": turn.number, "model": turn.model.id}
            )
        ending = "answered" if done.ok else "failed"
        added = turn.added(done.ok)
        if (kept := memory.remember(turn.history, turn.user_msg, turn.images, ending, added)) is not None:
            session.history = kept
        async for event in self._ticket(session, turn.model, ticket_mode, turn.number, turn.budget):
            yield event
        await asyncio.to_thread(self.s.history.save, session)
        await asyncio.to_thread(self.purge_expired)

    async def _commit_stopped(self, session: Session, turn: TurnState) -> None:
        """Stopped by the user: show what arrived; the model keeps the tool rounds that completed
        (their refunds and escalations happened) and forgets the unfinished answer."""
        session.messages.append(
            {"role": "assistant", "content": turn.answer, "stopped": True, "turn": turn.number, "model": turn.model.id}
        )
        added = turn.added(False)
        if (kept := memory.remember(turn.history, turn.user_msg, turn.images, "stopped", added)) is not None:
            session.history = kept
        # Awaiting is allowed while a task is cancelled or a generator closed, and the session stays
        # busy until the save is done; were this wait cancelled too, the thread would still finish it.
        await asyncio.to_thread(self._ticket_and_save, session)

    def _ticket_and_save(self, session: Session) -> None:
        self._set_ticket(session, inline_ticket(session))
        self.s.history.save(session)

    async def _commit_paused(self, session: Session, turn: TurnState) -> None:
        """The turn waits for a human: keep what resuming needs in the session (and so in storage)."""
        session.pending_call = pending_record(turn)
        session.history = turn.history  # the memory the turn started from (compacted, if it was)
        await asyncio.to_thread(self.s.history.save, session)

    async def _ticket(
        self, session: Session, model: ModelInfo, mode: str, turn: int, budget: Budget = NO_LIMIT
    ) -> AsyncIterator[Event]:
        if mode != "extraction":
            session.ticket_error = None
            ticket = await asyncio.to_thread(inline_ticket, session)
            await asyncio.to_thread(self._set_ticket, session, ticket)  # a database write
            yield TicketUpdated(session.ticket)
            return
        client, max_tokens = self.s.clients.get(), self.s.settings.max_output_tokens
        async for event in extracted_ticket(session, client, model, max_tokens, turn, budget):
            if isinstance(event, Ticket):
                await asyncio.to_thread(self._set_ticket, session, event)
                yield TicketUpdated(session.ticket)
            else:
                yield event

    def _set_ticket(self, session: Session, ticket: Ticket) -> None:
        before, session.ticket = session.ticket, ticket.model_dump(mode="json")
        if changes := ticket_changes(before, session.ticket):
            session.ticket_changes.append({"turn": session.turn, "changes": changes})
        self.s.history.record_ticket(session.conversation_id, session.ticket)
