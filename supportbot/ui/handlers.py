"""The playground's event handlers: plain methods taking and returning state.

``Playground`` holds only what every visitor shares (the services and the turn runner);
each handler receives a visitor's ``Session`` (from ``gr.State``) and returns the panels and
the session. Tests call them directly, no server needed; ``supportbot.ui.app`` only lays out
the page and wires these to its components.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Any

import gradio as gr
from gradio.utils import get_upload_folder, is_in_or_equal

from supportbot import approval
from supportbot.config import ASSETS_DIR
from supportbot.conversation import TurnRunner
from supportbot.errors import SupportbotError
from supportbot.events import ErrorEvent, TextDelta, ToolCallFinished, ToolCallStarted
from supportbot.limits import Allowance, Budget, VisitorBudget, visitor_identity
from supportbot.services import Services
from supportbot.session import Session
from supportbot.storage.history import MAX_IMPORT_BYTES
from supportbot.streaming import batches
from supportbot.ui import render, usage_view
from supportbot.ui.inert import plain_json
from supportbot.ui.render import STEP_MODES, LiveTurn
from supportbot.workers import TurnPool

SAMPLES = ASSETS_DIR / "samples"
AUTO = "auto"
EXAMPLES: list[tuple[str, str, list[str]]] = [
    ("📦 Order", "Where is my order #48291? It was supposed to arrive yesterday and I am getting worried.", []),
    ("💸 Refund", "I'd like a refund for order #48258, it never arrived.", []),
    ("📖 Policy", "What is your return policy for opened items?", []),
    ("🙋 Escalation", "This is ridiculous!!! My order #48291 is late AGAIN. I want to talk to a human NOW.", []),
    ("🇪🇸 Español", "Hola, ¿dónde está mi pedido #48291? Debía llegar ayer.", []),
    ("🖼️ Screenshot", "The checkout page shows this error when I try to pay. What should I do?", ["checkout-error.png"]),
    (
        "📄 Long log",
        "Our integration keeps failing since this morning, here is the service log. What is going on?",
        ["checkout-service.log"],
    ),
]


# A conversation id as session.new_conversation_id makes it; anything else is not looked up (or echoed).
_CONVERSATION_ID = re.compile(r"[A-Za-z0-9_-]{16,64}")


def example_message(index: int) -> dict[str, Any]:
    """The MultimodalTextbox value of an example scenario."""
    _, text, files = EXAMPLES[index]
    return {"text": text, "files": [str(SAMPLES / f) for f in files]}


class Playground:
    """Handlers for one app; per-visitor data arrives and leaves as a ``Session``."""

    def __init__(self, services: Services, runner: TurnRunner | TurnPool | None = None) -> None:
        self.services = services
        self.runner = runner or TurnRunner(services)

    # --- rendering ----------------------------------------------------------------------------

    def live_panels(self, session: Session, mode: str, live_turn: LiveTurn | None = None) -> tuple:
        """What changes while a turn streams: cheap to render, sent on every redraw."""
        uploads = Path(get_upload_folder())
        return (
            render.chat_view(session, _mode(mode), live_turn, uploads),
            render.tools_html(session),
            render.routes_html(session),
            render.context_meter(session),
        )

    def detail_panels(
        self, session: Session, plan_name: str | None = None, allowance: Allowance | None = None
    ) -> tuple:
        """What changes once per turn (ticket, usage, plot): rendered after the turn, not per delta."""
        usage_html, plot = usage_view.render(session, self.services.pricing, self._plan(plan_name))
        # plain_json: copies in which no dict looks like a file to Gradio (a model chooses tool arguments).
        return (
            plain_json(session.tool_calls[::-1]),
            render.ticket_chips(session.ticket, session.ticket_error),
            plain_json(session.ticket),
            usage_view.allowance_html(allowance) + usage_html,
            plot,
        )

    def _plan(self, plan_name: Any) -> str:
        """The plan to compare: the one asked for when it exists, else the configured one."""
        known = {p.name for p in self.services.pricing.plans}
        return plan_name if isinstance(plan_name, str) and plan_name in known else self.services.settings.plan

    def panels(self, session: Session, mode: str, plan_name: str | None, allowance: Allowance | None = None) -> tuple:
        """Every panel."""
        return (*self.live_panels(session, mode), *self.detail_panels(session, plan_name, allowance))

    # --- visitors and their budgets -------------------------------------------------------------

    def visitor(self, request: gr.Request | None, profile: gr.OAuthProfile | None) -> str:
        """Who is asking: the signed-in account, or the address (SupportbotError when sign-in is required)."""
        client = getattr(request, "client", None) if request is not None else None
        return visitor_identity(
            self.services.settings,
            forwarded_for=_forwarded_for(request),
            peer=getattr(client, "host", None),
            username=getattr(profile, "username", None),
        )

    def budget(self, request: gr.Request | None, profile: gr.OAuthProfile | None) -> Budget:
        """The visitor's budget for a turn."""
        return self.services.budget(self.visitor(request, profile))

    def allowance(self, request: gr.Request | None, profile: gr.OAuthProfile | None) -> Allowance | None:
        """What the visitor has left today, for the Usage panel (None when nothing is bounded)."""
        try:
            budget = self.budget(request, profile)
        except SupportbotError:  # not signed in: the chat says so; the panel shows no budget
            return None
        return budget.allowance() if isinstance(budget, VisitorBudget) else None

    # --- events -------------------------------------------------------------------------------

    async def chat(
        self,
        message: dict | str | None,
        model_id: str = AUTO,
        mode: str = "all",
        tmode: str = "inline",
        session: Session | None = None,
        progress: gr.Progress = gr.Progress(),  # noqa: B008 - how Gradio injects a progress tracker
        request: gr.Request = None,
        profile: gr.OAuthProfile | None = None,
    ):  # noqa: B008 - Gradio's injection idiom
        """Run one turn: stream the answer and tool calls; the detail panels follow when it ends."""
        session = session or Session()
        text, files = parse_message(message)
        live_turn = LiveTurn(session.turn + 1)
        try:
            budget = self.budget(request, profile)  # every model request of the turn draws on it
            events = self.runner.run(
                session,
                text,
                files,
                selected=model_id or AUTO,
                ticket_mode=tmode or self.services.settings.ticket_mode,
                progress=lambda f, d: progress(f, desc=d),
                budget=budget,
            )
            async for panels in self._stream(events, session, mode, live_turn):
                yield (*panels, None, session)
        except SupportbotError as exc:
            # Bad input (all checked before the turn starts): the error names the problem, the
            # message stays in the box and the session is untouched. Scripts get it as an exception.
            raise gr.Error(html.escape(str(exc), quote=False), title="Could not send that") from None
        yield (*self.live_panels(session, mode), None, session)

    async def _stream(self, events: Any, session: Session, mode: str, live_turn: LiveTurn) -> Any:
        """The live panels after each batch of a turn's events."""
        async for batch in batches(events):
            for event in batch:
                if isinstance(event, TextDelta):
                    live_turn.text += event.text
                elif isinstance(event, ToolCallStarted):
                    live_turn.pending[event.call_id] = (event.name, event.arguments)
                elif isinstance(event, ToolCallFinished):
                    live_turn.pending.pop(event.call_id, None)
                elif isinstance(event, ErrorEvent):
                    gr.Warning(html.escape(event.message, quote=False))  # toasts render HTML
            yield self.live_panels(session, mode, live_turn)

    async def approve(
        self,
        call_id: str,
        answer: str | bool,
        session: Session | None = None,
        request: gr.Request = None,
        profile: gr.OAuthProfile | None = None,
    ):
        """/approve: ``answer`` yes (run the call) or no (deny it) for the call ``call_id`` awaiting approval;
        the turn goes on in this event and its end streams back."""
        async for out in self._decide(call_id, answer, "all", None, session, request, profile):
            yield out

    async def approve_click(
        self,
        mode: str,
        tmode: str,
        session: Session | None,
        request: gr.Request = None,
        profile: gr.OAuthProfile | None = None,
    ):
        """The Approve button: run the call the conversation's turn paused at."""
        call_id = (session.pending_call or {}).get("call_id", "") if session else ""
        async for out in self._decide(call_id, True, mode, tmode, session, request, profile):
            yield out

    async def deny_click(
        self,
        mode: str,
        tmode: str,
        session: Session | None,
        request: gr.Request = None,
        profile: gr.OAuthProfile | None = None,
    ):
        """The Deny button: tell the model the call was not approved."""
        call_id = (session.pending_call or {}).get("call_id", "") if session else ""
        async for out in self._decide(call_id, False, mode, tmode, session, request, profile):
            yield out

    async def _decide(self, call_id: Any, answer: Any, mode: str, tmode: str | None, session, request, profile):
        session = session or Session()
        pending = session.pending_call or {}
        live_turn = LiveTurn(pending.get("turn", session.turn), text=pending.get("text") or "")
        try:
            approved = approval.decision(answer)
            budget = self.budget(request, profile)  # the resumed requests count like any other
            events = self.runner.resume(session, str(call_id or ""), approved, ticket_mode=tmode or None, budget=budget)
            async for panels in self._stream(events, session, mode, live_turn):
                yield (*panels, session)
        except SupportbotError as exc:
            raise gr.Error(html.escape(str(exc), quote=False), title="Could not do that") from None
        yield (*self.live_panels(session, mode), session)

    def approval_bar(self, session: Session | None) -> tuple:
        """The Approve / Deny row: shown, with what awaits, only while a call awaits approval."""
        pending = session.pending_call if session else None
        return gr.Row(visible=bool(pending)), render.approval_prompt(pending)

    def details(
        self,
        session: Session | None,
        plan_name: str | None = None,
        request: gr.Request = None,
        profile: gr.OAuthProfile | None = None,
    ) -> tuple:
        """The ticket, usage (with the visitor's budget left today) and plot panels."""
        return self.detail_panels(session or Session(), plan_name, self.allowance(request, profile))

    def redraw(self, mode: str, session: Session | None, plan_name: str | None) -> tuple:
        """Every panel, for a session that changed outside a turn."""
        return self.panels(session or Session(), mode, plan_name)

    def steps_changed(self, mode: str, session: Session | None) -> tuple:
        """Only the chat and its neighbours depend on the steps mode."""
        return self.live_panels(session or Session(), mode)

    def new_conversation(
        self,
        mode: str,
        plan_name: str | None = None,
        request: gr.Request = None,
        profile: gr.OAuthProfile | None = None,
    ) -> tuple:
        """Forget everything: the agent's memory too, and the demo shop's sandbox (a new id gets a fresh one)."""
        fresh = Session()
        return (*self.panels(fresh, mode, plan_name, self.allowance(request, profile)), None, fresh)

    def session_payload(self, session: Session | None) -> dict:
        """The whole session as JSON: messages, tool_calls, routes, usage, ticket."""
        return plain_json((session or Session()).to_json())

    def _stored(self, conversation_id: Any) -> Session | None:
        """A stored conversation by id; None for an unknown or malformed id; SupportbotError if unreadable."""
        cid = conversation_id.strip() if isinstance(conversation_id, str) else ""
        return self.runner.load(cid) if _CONVERSATION_ID.fullmatch(cid) else None

    def load(self, conversation_id: str, session: Session | None) -> tuple:
        """Reload a stored conversation by id (for scripts; the page uses ?c=<id>)."""
        try:
            loaded = self._stored(conversation_id)
        except SupportbotError as exc:
            raise gr.Error(html.escape(str(exc), quote=False)) from None
        if loaded is None:
            raise gr.Error("No conversation with that id is stored here (it may have expired).")
        return plain_json(loaded.to_json()), loaded

    def page_load(
        self,
        mode: str,
        session: Session | None,
        plan_name: str | None,
        request: gr.Request,
        profile: gr.OAuthProfile | None = None,
    ) -> tuple:
        """A page (re)load: resume ``?c=<id>`` when the link names a stored conversation."""
        cid = request.query_params.get("c") if request else None
        allowance = self.allowance(request, profile)
        if cid:
            try:
                loaded = self._stored(cid)
            except SupportbotError as exc:
                loaded = None
                why = html.escape(str(exc), quote=False)
                gr.Warning(f"That conversation could not be opened ({why}); starting a new one.")
            else:
                if loaded is None:
                    gr.Warning("That conversation link has expired or never existed; starting a new one.")
            if loaded is not None:
                return (*self.panels(loaded, mode, plan_name, allowance), loaded)
        session = session or Session()
        return (*self.panels(session, mode, plan_name, allowance), session)

    def export(self, session: Session | None) -> tuple[list[str], str]:
        """Conversation JSON (re-imports), a Markdown transcript and the ticket JSON."""
        session = session or Session()
        history = self.services.history
        # Removed a few minutes later (see supportbot.housekeeping): Gradio serves its own copy.
        out = self.services.exports.new_dir()
        cid = session.conversation_id
        (out / f"conversation-{cid}.json").write_text(history.export_json(session), encoding="utf-8")
        (out / f"transcript-{cid}.md").write_text(history.export_markdown(session), encoding="utf-8")
        (out / f"ticket-{cid}.json").write_text(
            json.dumps(session.ticket, indent=2, ensure_ascii=False), encoding="utf-8"
        )
        link = f"Reload this conversation any time with `?c={cid}` on this page's URL."
        return [str(p) for p in sorted(out.iterdir())], link

    def import_conversation(self, file: Any, mode: str, session: Session | None, plan_name: str | None) -> tuple:
        """Read an exported conversation as a new one; a bad file is refused with a warning."""
        history = self.services.history
        try:
            imported = history.import_json(_read_upload(file))
        except (SupportbotError, UnicodeDecodeError, OSError) as exc:
            # Toasts render HTML, and the message may quote the file's own keys.
            gr.Warning(f"Could not import that file: {html.escape(str(exc), quote=False)}")
            session = session or Session()
            return (*self.panels(session, mode, plan_name), session)
        history.save(imported)
        return (*self.panels(imported, mode, plan_name), imported)


def _forwarded_for(request: gr.Request | None) -> str | None:
    """Every X-Forwarded-For line joined in order (a proxy may add a line instead of appending)."""
    headers = getattr(request, "headers", None) if request is not None else None
    if headers is None:
        return None
    if hasattr(headers, "getlist"):
        return ", ".join(headers.getlist("x-forwarded-for")) or None
    return next((str(v) for k, v in dict(headers).items() if str(k).lower() == "x-forwarded-for"), None)


def _mode(mode: Any) -> str:
    return mode if isinstance(mode, str) and mode in STEP_MODES else STEP_MODES[0]


def _path_of(file: Any) -> str:
    if isinstance(file, dict):
        return str(file.get("path") or file.get("name") or "")
    return str(getattr(file, "path", None) or getattr(file, "name", None) or file or "")


def _read_upload(file: Any) -> bytes:
    """The bytes of a file a visitor uploaded (Gradio checks that on the way in; checked again here)."""
    path = Path(_path_of(file))
    if not path.is_file() or not is_in_or_equal(path, get_upload_folder()):
        raise SupportbotError("that is not a file uploaded to this page")
    if path.stat().st_size > MAX_IMPORT_BYTES:
        raise SupportbotError(f"the file is larger than {MAX_IMPORT_BYTES // 2**20} MB")
    return path.read_bytes()


def parse_message(message: Any) -> tuple[str, list[str]]:
    """Text and file paths from a MultimodalTextbox value (or plain text from scripts)."""
    if isinstance(message, str):
        return message, []
    if not isinstance(message, dict):
        return "", []
    files = [_path_of(f) for f in message.get("files") or [] if isinstance(f, str | dict)]
    return str(message.get("text") or ""), [f for f in files if f]
