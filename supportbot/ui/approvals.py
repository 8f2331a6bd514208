"""Approving or denying a tool call a turn paused at (``SUPPORTBOT_CONFIRM_TOOLS``), as handlers.

``Approvals`` is part of ``Playground``: the Approve and Deny buttons, ``/approve`` for scripts, and
the row that shows what awaits. A decision resumes the turn in an event of its own; it never writes
the message box, so a draft typed meanwhile is kept.
"""

from __future__ import annotations

import html
from typing import Any

import gradio as gr

from supportbot import approval
from supportbot.errors import SupportbotError
from supportbot.events import ErrorEvent, TextDelta, ToolCallFinished, ToolCallStarted
from supportbot.session import Session
from supportbot.streaming import FRAME_S, batches
from supportbot.ui import render
from supportbot.ui.render import LiveTurn


class Approvals:
    """The approval handlers of ``Playground`` (which gives ``runner``, ``budget`` and the panels)."""

    async def approve(
        self,
        call_id: str,
        answer: str | bool,
        session: Session | None = None,
        request: gr.Request = None,
        profile: gr.OAuthProfile | None = None,
    ):
        """/approve for scripts: ``answer`` yes (run the call) or no (deny it) for the call ``call_id`` awaiting
        approval; the turn goes on in this event. Outputs as /chat's, without the box: (chat, tools panel,
        route panel, context meter, session); a refusal is an error naming the problem."""
        session, keep = script_session(session)
        try:
            async for live in self._resume(session, call_id, answer, None, request, profile):
                yield (*self.script_panels(session, "all", live), keep)
        except SupportbotError as exc:
            raise gr.Error(html.escape(str(exc), quote=False), print_exception=False) from None
        yield (*self.script_panels(session, "all"), session)

    async def approve_click(
        self,
        mode: str,
        tmode: str,
        session: Session | None,
        request: gr.Request = None,
        profile: gr.OAuthProfile | None = None,
    ):
        """The Approve button: run the paused call (outputs: chat, timeline, meter, session)."""
        async for out in self._decide(True, mode, tmode, session, request, profile):
            yield out

    async def deny_click(
        self,
        mode: str,
        tmode: str,
        session: Session | None,
        request: gr.Request = None,
        profile: gr.OAuthProfile | None = None,
    ):
        """The Deny button: tell the model the call was not approved (outputs: chat, timeline, meter, session)."""
        async for out in self._decide(False, mode, tmode, session, request, profile):
            yield out

    async def _decide(self, approved: bool, mode: str, tmode: str, session: Any, request=None, profile=None):
        session = session if isinstance(session, Session) else Session()
        call_id = (session.pending_call or {}).get("call_id", "")
        try:
            async for live in self._resume(session, call_id, approved, tmode, request, profile):
                yield (*self.live_panels(session, mode, live), session)
        except SupportbotError as exc:  # one warning, no error pills: the conversation is as it was
            gr.Warning(html.escape(str(exc), quote=False), title="Could not do that")
        yield (*self.live_panels(session, mode), session)

    async def _resume(self, session: Session, call_id: Any, answer: Any, tmode: Any, request, profile):
        """Resume the paused turn; yields what is shown of it after each batch of its events."""
        pending = session.pending_call or {}
        live = LiveTurn(int(pending.get("turn") or session.turn), text=pending.get("text") or "")
        approved = approval.decision(answer)
        budget = self.budget(request, profile)  # the resumed requests count like any other
        tmode = tmode if tmode in ("inline", "extraction") else None
        events = self.runner.resume(session, str(call_id or ""), approved, ticket_mode=tmode, budget=budget)
        async for batch in batches(events, FRAME_S):
            follow(live, batch)
            if not batch.last:  # the caller's closing redraw shows the last batch
                yield live

    def approval_bar(self, session: Session | None) -> tuple:
        """The Approve / Deny row: shown, with what awaits, only while a call awaits approval."""
        pending = session.pending_call if isinstance(session, Session) else None
        return gr.Row(visible=bool(pending)), render.approval_prompt(pending)


def script_session(value: Any) -> tuple[Session, Any]:
    """The session a script's streaming event works on, and what its redraws give the State output.

    Gradio recomputes a State's config whenever it is given a value, and the stored session is this very
    object, changed in place: redraws skip it. Only a session made here is handed over from the first one."""
    if isinstance(value, Session):
        return value, gr.skip()
    session = Session()
    return session, session


def follow(live_turn: LiveTurn, batch: list[Any]) -> None:
    """Apply a batch of a turn's events to what is shown of the turn in flight."""
    for event in batch:
        if isinstance(event, TextDelta):
            live_turn.text += event.text
        elif isinstance(event, ToolCallStarted):
            live_turn.pending[event.call_id] = (event.name, event.arguments)
        elif isinstance(event, ToolCallFinished):
            live_turn.pending.pop(event.call_id, None)
        elif isinstance(event, ErrorEvent):
            gr.Warning(html.escape(event.message, quote=False))  # toasts render HTML
