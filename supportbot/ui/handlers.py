"""The playground's event handlers: plain methods taking and returning state.

``Playground`` holds only what every visitor shares (the services and the turn runner);
each handler receives a visitor's ``Session`` (from ``gr.State``) and returns the panels and
the session. Tests call them directly, no server needed; ``supportbot.ui.app`` only lays out
the page and wires these to its components. Opening, saving and linking conversations are in
``supportbot.ui.conversations``.

The message box follows a chat app: a turn empties the box once, at its start, and never writes
it again, so a draft typed during the answer is kept; a send while a turn runs is refused by a
note beside the box; an empty send does nothing; bad input is one warning naming the file, with
the message put back. Only the script endpoint ``/chat`` raises errors (its callers expect them).
"""

from __future__ import annotations

import asyncio
import html
from pathlib import Path
from typing import Any

import gradio as gr
from gradio.utils import get_upload_folder

from supportbot.client import Simulation
from supportbot.config import ASSETS_DIR
from supportbot.conversation import TurnRunner
from supportbot.errors import SupportbotError
from supportbot.limits import Allowance, Budget, VisitorBudget, visitor_identity
from supportbot.services import Services
from supportbot.session import Session
from supportbot.streaming import FRAME_S, batches
from supportbot.ui import agent_view, links, render, usage_view
from supportbot.ui.agent_view import LATEST
from supportbot.ui.approvals import Approvals, follow, script_session
from supportbot.ui.conversations import BUSY_NOTE, Conversations, composer, path_of
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
# How long the after-turn step waits for a stopped turn to save itself (or for another turn to end).
SETTLE_S = 900.0


def example_message(index: int) -> dict[str, Any]:
    """The MultimodalTextbox value of an example scenario."""
    _, text, files = EXAMPLES[index]
    return {"text": text, "files": [str(SAMPLES / f) for f in files]}


class Playground(Conversations, Approvals):
    """Handlers for one app; per-visitor data arrives and leaves as a ``Session``."""

    def __init__(self, services: Services, runner: TurnRunner | TurnPool | None = None) -> None:
        self.services = services
        self.runner = runner or TurnRunner(services)
        self.uploads = Path(get_upload_folder())  # resolved once: every redraw names files under it

    # --- rendering ----------------------------------------------------------------------------

    def live_panels(
        self,
        session: Session,
        mode: str,
        live_turn: LiveTurn | None = None,
        selected: Any = LATEST,
        plan_name: str | None = None,
    ) -> tuple:
        """What changes while a turn streams: the chat, the agent view's timeline, the context meter."""
        pricing, plan = self.services.pricing, self._plan(plan_name)
        return (
            render.chat_view(session, _mode(mode), live_turn, self.uploads),
            agent_view.timeline_html(session, selected, pricing, plan, live_turn),
            render.context_meter(session),
        )

    def script_panels(self, session: Session, mode: str, live_turn: LiveTurn | None = None) -> tuple:
        """What /chat and /approve stream: the chat, the tools and route panels, the context meter."""
        return (
            render.chat_view(session, _mode(mode), live_turn, self.uploads),
            render.tools_html(session),
            render.routes_html(session),
            render.context_meter(session),
        )

    def detail_panels(
        self,
        session: Session,
        plan_name: str | None = None,
        allowance: Allowance | None = None,
        selected: Any = LATEST,
    ) -> tuple:
        """What changes once per turn: all calls as JSON, the ticket, the cost panel and plot, the turn picker."""
        view = usage_view.render(session, self.services.pricing, self._plan(plan_name))
        choices = agent_view.turn_choices(session)
        keep = selected if any(value == selected for _, value in choices) else LATEST
        # plain_json: copies in which no dict looks like a file to Gradio (a model chooses tool arguments).
        return (
            plain_json(session.tool_calls[::-1]),
            render.ticket_chips(session.ticket, session.ticket_error),
            plain_json(session.ticket),
            usage_view.allowance_html(allowance) + view.html,
            # The colours name this plan's line: a new map redraws the legend when the plan changes.
            gr.LinePlot(value=view.frame, color_map=view.colors, sort=view.turns),
            gr.Dropdown(choices=choices, value=keep),
        )

    def _plan(self, plan_name: Any) -> str:
        """The plan to compare: the one asked for when it exists, else the configured one."""
        known = {p.name for p in self.services.pricing.plans}
        return plan_name if isinstance(plan_name, str) and plan_name in known else self.services.settings.plan

    def panels(
        self,
        session: Session,
        mode: str,
        plan_name: str | None,
        allowance: Allowance | None = None,
        selected: Any = LATEST,
    ) -> tuple:
        """Every panel: the live ones (chat, timeline, meter), then the detail ones."""
        return (
            *self.live_panels(session, mode, None, selected, plan_name),
            *self.detail_panels(session, plan_name, allowance, selected),
        )

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
        """What the visitor has left today, for the cost panel (None when nothing is bounded)."""
        try:
            budget = self.budget(request, profile)
        except SupportbotError:  # not signed in: the chat says so; the panel shows no budget
            return None
        return budget.allowance() if isinstance(budget, VisitorBudget) else None

    # --- a turn -------------------------------------------------------------------------------

    def _events(self, session, text, files, model_id, tmode, progress, request, profile, simulate=None):
        """The turn's events (SupportbotError at the first one for bad input or a refused budget)."""
        return self.runner.run(
            session,
            text,
            files,
            selected=model_id or AUTO,
            ticket_mode=tmode or self.services.settings.ticket_mode,
            progress=lambda f, d: progress(f, desc=d),
            budget=self.budget(request, profile),  # every model request of the turn draws on it
            simulate=simulate if isinstance(simulate, Simulation) else None,  # the QA tab's, this visitor's
        )

    async def chat(
        self,
        message: dict | str | None,
        model_id: str = AUTO,
        mode: str = "all",
        tmode: str = "inline",
        session: Session | None = None,
        simulate: Simulation | None = None,
        progress: gr.Progress = gr.Progress(),  # noqa: B008 - how Gradio injects a progress tracker
        request: gr.Request = None,
        profile: gr.OAuthProfile | None = None,
    ):  # noqa: B008 - Gradio's injection idiom
        """/chat for scripts: run one turn and stream it; bad input is an error naming the problem.

        Outputs, as before: (chat, tools panel, route panel, context meter, box, session)."""
        session, keep = script_session(session)  # the State: see script_session
        text, files = parse_message(message)
        live_turn = LiveTurn(session.turn + 1)
        # The components get values, never gr.skip(): Gradio builds a whole component (and its API schema)
        # for each skipped one, while an unchanged value costs a comparison and nothing on the wire. The box
        # is not on any page (scripts call /chat), so its None clears nothing.
        try:
            events = self._events(session, text, files, model_id, tmode, progress, request, profile, simulate)
            async for batch in batches(events, FRAME_S):
                follow(live_turn, batch)
                if batch.last:
                    break  # the closing redraw below shows these events too
                yield (*self.script_panels(session, mode, live_turn), None, keep)
        except SupportbotError as exc:
            # All checked before the turn starts: the session is untouched. Scripts get it as an exception;
            # it is the caller's mistake, not the server's, so no traceback in the log.
            raise gr.Error(html.escape(str(exc), quote=False), print_exception=False) from None
        yield (*self.script_panels(session, mode), None, session)

    async def send(
        self,
        message: Any,
        model_id: str,
        mode: str,
        tmode: str,
        session: Session | None,
        plan_name: str | None,
        selected: Any,
        simulate: Simulation | None = None,
        progress: gr.Progress = gr.Progress(),  # noqa: B008
        request: gr.Request = None,
        profile: gr.OAuthProfile | None = None,
    ):
        """The message box: start a turn and stream it (outputs: see ``_turn``)."""
        args = (model_id, mode, tmode, session, plan_name, selected, simulate, progress, request, profile)
        async for out in self._turn(message, True, *args):
            yield out

    async def send_example(
        self,
        index: Any,
        model_id: str,
        mode: str,
        tmode: str,
        session: Session | None,
        plan_name: str | None,
        selected: Any,
        simulate: Simulation | None = None,
        progress: gr.Progress = gr.Progress(),  # noqa: B008
        request: gr.Request = None,
        profile: gr.OAuthProfile | None = None,
    ):
        """An example button: its message is sent as is, and whatever is in the box stays there."""
        message = example_message(index) if isinstance(index, int) and 0 <= index < len(EXAMPLES) else None
        args = (model_id, mode, tmode, session, plan_name, selected, simulate, progress, request, profile)
        async for out in self._turn(message, False, *args):
            yield out

    async def _turn(self, message, from_box, model_id, mode, tmode, session, plan_name, selected, sim, progress, *who):
        """Outputs: (box, note, chat, timeline, meter, turn picker, conversation id, session)."""
        session = session if isinstance(session, Session) else Session()
        text, files = parse_message(message)
        if not text.strip() and not files:
            yield (gr.skip(),) * 8  # an empty send does nothing
            return
        if session.busy:  # refused beside the box; the box and the chat stay as they are
            yield (gr.skip(), BUSY_NOTE, *(gr.skip(),) * 6)
            return
        live_turn = LiveTurn(session.turn + 1, user=text, files=[Path(f).name for f in files])
        # Emptied once, now; never written again during the turn (so a draft typed meanwhile is kept).
        box = gr.MultimodalTextbox(value=None, submit_btn=False, stop_btn=True) if from_box else composer(True)
        live = self.live_panels(session, mode, live_turn, LATEST, plan_name)  # a new turn shows itself
        yield (box, "", *live, gr.Dropdown(value=LATEST), gr.skip(), session)
        try:
            async for batch in batches(
                self._events(session, text, files, model_id, tmode, progress, *who, sim), FRAME_S
            ):
                follow(live_turn, batch)
                # The id goes to the address bar once the turn is stored (a fork has its new id by then).
                cid = session.conversation_id if session.turn >= live_turn.turn else gr.skip()
                live = self.live_panels(session, mode, live_turn, LATEST, plan_name)
                yield (gr.skip(), gr.skip(), *live, gr.skip(), cid, session)
        except SupportbotError as exc:
            # Checked before the turn starts: nothing changed. One warning names the problem (and the file),
            # the message goes back in the box; no error pills, no traceback in the log.
            gr.Warning(html.escape(str(exc), quote=False), title="Could not send that")
            back = gr.MultimodalTextbox(value=message, submit_btn=True, stop_btn=False) if from_box else gr.skip()
            live = self.live_panels(session, mode, None, selected, plan_name)
            yield (back, gr.skip(), *live, gr.Dropdown(value=selected), gr.skip(), session)

    async def finish(
        self,
        mode: str,
        session: Session | None,
        plan_name: str | None,
        selected: Any,
        recent: Any,
        request: gr.Request = None,
        profile: gr.OAuthProfile | None = None,
    ) -> tuple:
        """After a turn (answered, refused or stopped): the box's buttons back, every panel, the links.

        Outputs: (box, note, chat, timeline, meter, *detail panels, id, browser's list, recent list)."""
        session = session if isinstance(session, Session) else Session()
        waited = 0.0
        while session.busy and waited < SETTLE_S:  # a stopped turn saves itself first (or another turn runs)
            await asyncio.sleep(0.05)
            waited += 0.05
        allowance = await asyncio.to_thread(self.allowance, request, profile)
        conv = await asyncio.to_thread(self.links, session, recent, False)
        panels = await asyncio.to_thread(self.panels, session, mode, plan_name, allowance, selected)
        return (composer(False), "", *panels, *conv)

    def details(
        self,
        session: Session | None,
        plan_name: str | None = None,
        request: gr.Request = None,
        profile: gr.OAuthProfile | None = None,
    ) -> tuple:
        """The detail panels, with the visitor's budget left today."""
        return self.detail_panels(session or Session(), plan_name, self.allowance(request, profile))

    def redraw(self, mode: str, session: Session | None, plan_name: str | None) -> tuple:
        """Every panel, for a session that changed outside a turn."""
        return self.panels(session or Session(), mode, plan_name)

    def steps_changed(self, mode: str, session: Session | None) -> list[dict[str, Any]]:
        """Only the chat depends on the steps mode."""
        return render.chat_view(session or Session(), _mode(mode), None, Path(get_upload_folder()))

    def turn_picked(self, selected: Any, session: Session | None, plan_name: str | None) -> str:
        """The agent view of the turn picked."""
        return agent_view.timeline_html(session or Session(), selected, self.services.pricing, self._plan(plan_name))

    def plan_changed(self, plan_name: Any, session: Session | None, selected: Any) -> tuple:
        """The timeline's and the cost panel's figures under another plan: (timeline, cost panel, plot)."""
        session = session or Session()
        detail = self.detail_panels(session, plan_name, None, selected)
        return self.turn_picked(selected, session, plan_name), detail[3], detail[4]

    def links(self, session: Session, recent: Any, refresh: bool = True) -> tuple:
        """(the id for the address bar once something is stored, the browser's list, the list shown).

        Without ``refresh``, a list that already starts with this conversation is left as it is: the list
        shown is rebuilt (each id looked up) only when it changes, not after every turn."""
        stored = session.turn > 0 and bool(session.messages)
        ids = links.remember(recent, session.conversation_id) if stored else links.recent_ids(recent)
        if not refresh and ids == links.recent_ids(recent):
            return (session.conversation_id if stored else "", gr.skip(), gr.skip())
        choices = links.recent_choices(ids, self.runner.load, session)
        value = session.conversation_id if any(v == session.conversation_id for _, v in choices) else None
        # The browser keeps no empty value: with nothing to write, nothing is written.
        return (session.conversation_id if stored else "", ids or gr.skip(), gr.Radio(choices=choices, value=value))


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


def parse_message(message: Any) -> tuple[str, list[str]]:
    """Text and file paths from a MultimodalTextbox value (or plain text from scripts)."""
    if isinstance(message, str):
        return message, []
    if not isinstance(message, dict):
        return "", []
    files = [path_of(f) for f in message.get("files") or [] if isinstance(f, str | dict)]
    return str(message.get("text") or ""), [f for f in files if f]
