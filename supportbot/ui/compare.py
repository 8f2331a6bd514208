"""Compare mode: the same message to two models (or Auto against a model), side by side.

Each side is a conversation of its own (``ui.compare_view.Side``): its own history, its own sandbox of
the demo shop, its own turn through the app's turn runner (``TurnRunner`` in process, or the
``TurnPool``'s workers), so a comparison runs agent work exactly where a chat turn does. Both sides
run at once; one side's failure (a model error, a refusal) shows in its column and never stops the
other. Both sides draw on the visitor's budget, checked for room for both before anything is sent.
One comparison at a time per page; Stop cancels both sides, which keep what arrived.

A call that needs a person's approval (``SUPPORTBOT_CONFIRM_TOOLS``) is denied in Compare: the side's
model is told it was not approved and answers on; nothing with side effects runs unapproved.

``build_tab`` lays out the tab inside the caller's ``gr.Tabs`` and wires it, with ``/compare`` for scripts.
"""

from __future__ import annotations

import asyncio
import html
import time
import traceback
from typing import Any

import gradio as gr

from supportbot.errors import SupportbotError
from supportbot.events import ErrorEvent
from supportbot.limits import Budget
from supportbot.streaming import FRAME_S, batches
from supportbot.ui import render
from supportbot.ui.approvals import follow
from supportbot.ui.compare_view import CompareState, Side, side_json, stats_html
from supportbot.ui.handlers import AUTO, SETTLE_S, Playground
from supportbot.ui.inert import plain_json
from supportbot.ui.render import LiveTurn

BUSY = "A comparison is still running: wait for it, or press ■ Stop."
_END = object()


class Comparer:
    """Compare mode's handlers; shares the playground's services, turn runner and budgets."""

    def __init__(self, pg: Playground) -> None:
        self.pg = pg
        self.services = pg.services

    # --- running both sides ------------------------------------------------------------------------

    def _check_models(self, *model_ids: Any) -> list[str]:
        picked = []
        for model_id in model_ids:
            model_id = model_id or AUTO
            if not isinstance(model_id, str) or (model_id != AUTO and model_id not in self.services.catalog):
                raise SupportbotError(f"Unknown model {str(model_id)[:80]!r}: choose Auto or a model of the catalog.")
            picked.append(model_id)
        return picked

    async def _start(self, state: CompareState, text: str, models: list[str], request, profile) -> Budget:
        """Refuse before anything changes (a busy comparison, no room for both sides); else claim the state."""
        if not text.strip():
            raise SupportbotError("Type a message to compare first.")
        if state.busy:
            raise SupportbotError(BUSY)
        state.busy = True  # claimed before the first await: two clicks at once never both start
        try:
            budget = self.pg.budget(request, profile)  # sign-in, when required, is checked here
            await budget.check(len(models))  # one request per side at least: both sides are charged
        except BaseException:
            state.busy = False
            raise
        return budget

    async def _side(self, side: Side, text: str, budget: Budget, queue: asyncio.Queue) -> None:
        """Run one side's turn, handing its events to ``queue``; a refusal or a crash stays in this side."""
        started = time.monotonic()
        runner = self.pg.runner
        try:
            events = runner.run(side.session, text, [], selected=side.selected, ticket_mode="inline", budget=budget)
            while events is not None:
                async for event in events:
                    queue.put_nowait((side, event))
                events = None
                pending = side.session.pending_call
                if pending:  # approvals are not offered here: the call is denied and the model answers on
                    events = runner.resume(side.session, pending["call_id"], False, ticket_mode="inline", budget=budget)
        except SupportbotError as exc:
            side.error = str(exc)
        except Exception as exc:  # noqa: BLE001 - one side's crash must not take the other side down
            side.error = f"This side failed: {type(exc).__name__}."
            traceback.print_exc()  # the operator's log; the visitor sees the side's error
        finally:
            side.latency_ms = (time.monotonic() - started) * 1000
            queue.put_nowait((side, _END))

    async def _run(self, state: CompareState, text: str, budget: Budget):
        """Both sides at once; yields once a redraw (``streaming.batches``), whichever side the events came from."""
        queue: asyncio.Queue = asyncio.Queue()
        tasks = [asyncio.create_task(self._side(side, text, budget, queue)) for side in state.sides()]

        async def merged():
            running = len(tasks)
            while running:
                side, event = await queue.get()
                running -= event is _END
                yield side, event

        try:
            # Framed like the chat: each redraw renders both whole chats.
            async for burst in batches(merged(), FRAME_S):
                for side, event in burst:
                    if event is _END:
                        side.live = None
                    elif side.live is not None and not isinstance(event, ErrorEvent):  # errors show in the column
                        follow(side.live, [event])
                yield
        finally:
            for task in tasks:
                if not task.done():
                    task.cancel()  # Stop, or the page went away: each side records its stop
            await asyncio.gather(*tasks, return_exceptions=True)
            for side in state.sides():
                side.live = None
            state.busy = False

    def _claim(self, state: CompareState, text: str, models: list[str]) -> None:
        for side, model_id in zip(state.sides(), models, strict=True):
            side.selected, side.error, side.latency_ms = model_id, None, None
            side.live = LiveTurn(side.session.turn + 1, user=text)

    # --- the page ----------------------------------------------------------------------------------

    def _name(self, model_id: str) -> str:
        return self.services.catalog.get(model_id).name if model_id in self.services.catalog else model_id

    def panels(self, state: CompareState) -> tuple:
        """(chat A, stats A, chat B, stats B)."""
        uploads, pricing, plan = self.pg.uploads, self.services.pricing, self.services.settings.plan
        out: list[Any] = []
        for side in state.sides():
            chat = render.chat_view(side.session, "compact", side.live, uploads)
            if side.error and side.live is None:
                chat.append({"role": "assistant", "content": f"⚠️ **Not run.** {html.escape(side.error)}"})
            out += [chat, stats_html(side, pricing, plan, self._name)]
        return tuple(out)

    async def compare_click(
        self,
        message: Any,
        model_a: Any,
        model_b: Any,
        state: Any,
        request: gr.Request = None,
        profile: gr.OAuthProfile | None = None,
    ):
        """The Compare button: both sides stream into their columns.

        Outputs: (chat A, stats A, chat B, stats B, note, Compare button, Stop button, state)."""
        state = state if isinstance(state, CompareState) else CompareState()
        text = message if isinstance(message, str) else ""
        try:
            models = self._check_models(model_a, model_b)
            budget = await self._start(state, text, models, request, profile)
        except SupportbotError as exc:  # nothing ran: said beside the button, both columns as they were
            yield (*(gr.skip(),) * 4, html.escape(str(exc), quote=False), gr.skip(), gr.skip(), state)
            return
        self._claim(state, text, models)
        running = (gr.Button(visible=False), gr.Button(visible=True))
        try:
            yield (*self.panels(state), "", *running, state)
            async for _ in self._run(state, text, budget):
                yield (*self.panels(state), gr.skip(), gr.skip(), gr.skip(), state)
        finally:
            state.busy = False  # also when stopped before the sides started

    async def finish(self, state: Any) -> tuple:
        """After a comparison (answered, refused or stopped): the final columns, the buttons back."""
        state = state if isinstance(state, CompareState) else CompareState()
        waited = 0.0
        while any(s.session.busy for s in state.sides()) and waited < SETTLE_S:  # a stopped side saves first
            await asyncio.sleep(0.05)
            waited += 0.05
        panels = await asyncio.to_thread(self.panels, state)
        return (*panels, gr.Button(visible=True), gr.Button(visible=False))

    async def compare_api(
        self,
        message: Any,
        model_a: Any,
        model_b: Any,
        state: Any,
        request: gr.Request = None,
        profile: gr.OAuthProfile | None = None,
    ):
        """/compare for scripts: one message to two models (``auto`` or catalog ids); returns
        ``{"a": side, "b": side}``, each with model, answer, tool_calls, latency_ms, tokens, requests, cost
        and error. A comparison goes on from the previous one in the same client session."""
        state = state if isinstance(state, CompareState) else CompareState()
        text = message if isinstance(message, str) else ""
        try:
            models = self._check_models(model_a, model_b)
            budget = await self._start(state, text, models, request, profile)
        except SupportbotError as exc:
            raise gr.Error(html.escape(str(exc), quote=False), print_exception=False) from None
        self._claim(state, text, models)
        try:
            yield gr.skip(), state  # stored now: a second call from this session sees the comparison running
            async for _ in self._run(state, text, budget):
                pass
        finally:
            state.busy = False
        yield self.result(state), state

    def result(self, state: CompareState) -> dict[str, Any]:
        """Both sides' last turn as ``/compare`` returns it (a copy in which nothing looks like a file to Gradio:
        a model chooses tool arguments, and Gradio would serve a path an output dict names)."""
        pricing, plan = self.services.pricing, self.services.settings.plan
        return plain_json({"a": side_json(state.a, pricing, plan), "b": side_json(state.b, pricing, plan)})

    def reset(self, state: Any) -> tuple:
        """A new comparison: both sides start over (new conversations, new sandboxes)."""
        fresh = CompareState()
        return (*self.panels(fresh), "", gr.Button(visible=True), gr.Button(visible=False), fresh)


def build_tab(pg: Playground, choices: list[tuple[str, str]], turn_options: dict[str, Any]) -> Comparer:
    """The ⚖️ Compare tab's content and events, inside the caller's ``gr.Tab``; ``turn_options`` are the
    concurrency settings of chat turns (a comparison is two turns' work in one slot)."""
    cmp = Comparer(pg)
    state = gr.State(None)
    first = [c for _, c in choices if c != AUTO]
    with gr.Row(equal_height=True):
        model_a = gr.Dropdown(choices, value=AUTO, label="Model A", min_width=160, elem_id="sb-cmp-model-a")
        model_b = gr.Dropdown(
            choices, value=first[0] if first else AUTO, label="Model B", min_width=160, elem_id="sb-cmp-model-b"
        )
    message = gr.Textbox(
        placeholder="One message, sent to both models…", show_label=False, lines=2, max_lines=6, elem_id="sb-cmp-box"
    )
    with gr.Row(equal_height=True):
        go = gr.Button("⚖️ Compare", variant="primary", size="sm", elem_id="sb-cmp-go")
        stop = gr.Button("■ Stop", variant="stop", size="sm", visible=False, elem_id="sb-cmp-stop")
        reset = gr.Button("↺ Reset", size="sm", elem_id="sb-cmp-reset")
    note = gr.HTML("", elem_classes="sb-notebox")
    columns = []
    with gr.Row(equal_height=False, elem_classes="sb-cmp-cols"):
        for label in ("A", "B"):
            with gr.Column(min_width=240, elem_id=f"sb-cmp-{label.lower()}"):
                # No label: Gradio draws it over the first lines; the dropdown above names the side.
                chat = gr.Chatbot(
                    label=f"Model {label}",
                    show_label=False,
                    height=380,
                    group_consecutive_messages=False,
                    buttons=["copy_all"],
                )
                columns += [chat, gr.HTML(stats_html(Side(), pg.services.pricing, pg.services.settings.plan))]
    result = gr.JSON(visible=False)
    api = gr.Button(visible=False)

    outputs = [*columns, note, go, stop, state]
    events = []
    for trigger in (go.click, message.submit):
        event = trigger(
            cmp.compare_click, [message, model_a, model_b, state], outputs, api_visibility="private", **turn_options
        )
        event.then(cmp.finish, [state], [*columns, go, stop], api_visibility="private", show_progress="hidden")
        events.append(event)
    stop.click(None, None, None, cancels=events, api_visibility="private")
    reset.click(cmp.reset, [state], outputs, cancels=events, api_visibility="private")
    for chat in columns[::2]:  # a chat's trash icon starts over too: clearing only the view would come back
        chat.clear(cmp.reset, [state], outputs, cancels=events, api_visibility="private")
    api.click(cmp.compare_api, [message, model_a, model_b, state], [result, state], api_name="compare", **turn_options)
    return cmp
