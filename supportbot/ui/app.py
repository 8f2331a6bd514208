"""The Blocks layout: components and the wiring of their events to ``ui.handlers``.

All per-user data lives in ``gr.State``; the handlers are plain methods tested without a server.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr

from supportbot.config import PACKAGE_DIR, Settings, on_space, redact
from supportbot.conversation import TurnRunner
from supportbot.errors import ApiError, ConfigError
from supportbot.housekeeping import Sweeper
from supportbot.services import Services
from supportbot.session import Session
from supportbot.ui import agent_view, compare, links, render, usage_view
from supportbot.ui.agent_view import LATEST
from supportbot.ui.handlers import AUTO, EXAMPLES, Playground
from supportbot.ui.qa_view import build_qa_tab
from supportbot.ui.render import STEP_MODES
from supportbot.workers import TurnPool


def model_choices(services: Services) -> list[tuple[str, str]]:
    """'Auto' then every catalog model, grouped by its first category: vision, tier and warnings marked."""
    catalog = services.catalog
    plan = (catalog.plan or "").title()
    choices = [(f"Auto — {plan} plan" if plan else "Auto — route every turn", AUTO)]  # short: the box is narrow
    for category in ("triage", "reasoning", "multilingual", "long_context", "agentic", "vision"):
        for m in catalog:
            if m.categories[0] == category:
                tier = "" if m.tier == "unknown" else f" · {m.tier_label}"
                # Still selectable by hand: the flags say what the service or the plan may refuse.
                flags = " ⚠ not listed by the service" if catalog.listed(m.id) is False else ""
                flags += f" ⚠ above your {plan} plan" if catalog.on_plan(m) is False else ""
                choices.append((f"{category.replace('_', ' ').title()} · {m.label}{tier}{flags}", m.id))
    return choices


# Chat turns and resumed (approved or denied) turns share one concurrency group: SUPPORTBOT_CONCURRENCY
# bounds the model work in flight, whichever button started it.
TURNS = "turn"
# The chat fills the viewport's height less the header, the box, the status line and the examples row
# (styles.css sets it again for phones, where the header takes two lines).
CHAT_HEIGHT = "calc(100dvh - 238px)"

# Gradio's own cache (uploads, and its copies of outputs such as exports): every 10 minutes,
# delete files older than 50 minutes, so none outlives an hour. Only set here: with no
# delete_cache Gradio never deletes anything.
CACHE_SWEEP = (600, 3000)


def queue_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for queue(): turns served at once, and how many may wait before 'busy, try again'."""
    return {"default_concurrency_limit": settings.concurrency_limit, "max_size": settings.queue_max_size}


# The chat never loads remote resources: images and media only from this server (and data:/blob:
# URLs the page makes itself), forms only post here, no plugins. ``ui.inert`` also rewrites images
# in messages into links on the server; this is the layer that holds whatever a message contains.
CONTENT_SECURITY_POLICY = (
    "img-src 'self' data: blob:; media-src 'self' data: blob:; object-src 'none'; form-action 'self'; base-uri 'self'"
)


def launch_options(settings: Settings, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Keyword arguments for launch(): host, port, upload cap, history off, data dir blocked, CSP."""
    env = dict(os.environ if env is None else env)
    host = env.get("GRADIO_SERVER_NAME") or ("0.0.0.0" if on_space(env) else "127.0.0.1")
    raw_port = env.get("GRADIO_SERVER_PORT") or "7860"
    if not raw_port.isdigit() or not 0 < int(raw_port) < 65536:
        raise ConfigError("GRADIO_SERVER_PORT", f"must be a port number from 1 to 65535 (got {raw_port!r})")
    port = int(raw_port)
    return {
        "server_name": host,
        "server_port": port,
        "max_file_size": f"{settings.max_upload_mb}mb",
        "run_history": False,  # logs and screenshots can hold private data
        # Never served, whatever a response names: blocked_paths wins over every allowed path in Gradio.
        "blocked_paths": blocked_paths(settings, env),
        "head": f'<meta http-equiv="Content-Security-Policy" content="{CONTENT_SECURITY_POLICY}">',
        "max_threads": max(40, settings.concurrency_limit + 8),
        "theme": gr.themes.Soft(primary_hue="indigo"),
        "css": (PACKAGE_DIR / "ui" / "styles.css").read_text(encoding="utf-8"),
        "footer_links": ["api", "gradio"],
    }


def blocked_paths(settings: Settings, env: dict[str, str]) -> list[str]:
    """The data directory (resolved), plus any GRADIO_BLOCKED_PATHS the operator set (launch() would drop them)."""
    extra = [p.strip() for p in env.get("GRADIO_BLOCKED_PATHS", "").split(",") if p.strip()]
    return [str(Path(settings.data_dir).resolve()), *extra]


def _no_matplotlib_retries() -> None:
    """Gradio imports matplotlib twice per event to set its backend; when it is not installed, each try
    searches the whole sys.path again (a failed import is not remembered). Remember it once."""
    if "matplotlib" not in sys.modules and importlib.util.find_spec("matplotlib") is None:
        sys.modules["matplotlib"] = None  # ``import matplotlib`` then fails at once, as it would anyway


def build_app(
    settings: Settings | None = None,
    services: Services | None = None,
    *,
    worker_services: Callable[[Settings], Services] | None = None,
) -> gr.Blocks:
    """Lay out the playground and wire its events; nothing here is shared between users except read-only services.

    With ``SUPPORTBOT_TURN_WORKERS`` set, turns run in that many worker processes (``supportbot.workers``),
    each making its Services with ``worker_services`` (a picklable function; ``Services.create`` by
    default); the pool is ``demo.turn_pool``, for whoever must stop it before the process ends."""
    settings = settings or Settings.load()
    _no_matplotlib_retries()
    services = services or Services.create(settings)
    runner = TurnRunner(services)
    pool = TurnPool(runner, settings.turn_workers, factory=worker_services) if settings.turn_workers else None
    pg = Playground(services, pool or runner)
    pg.runner.purge_expired()  # then again after turns and on the sweeper's timer, at most hourly
    Sweeper(services).start()
    live = services.clients.engine is None
    limit = settings.concurrency_limit
    # LoginButton off a Space needs a local HF login and the network (it raises at the end of the
    # Blocks otherwise), so it is only created on a Space; elsewhere sign-in cannot happen.
    login = settings.require_login and bool(os.environ.get("SPACE_ID"))
    if login:
        try:
            import authlib  # noqa: F401 - Gradio's OAuth routes need it; say so now, not at launch
        except ImportError:
            raise ConfigError(
                "SUPPORTBOT_REQUIRE_LOGIN", "sign-in needs Gradio's OAuth extra: pip install 'gradio[oauth]'"
            ) from None
    elif settings.require_login:
        print("supportbot: SUPPORTBOT_REQUIRE_LOGIN=1 off a Space: sign-in is unavailable, so every turn asks for it")

    with gr.Blocks(title="supportbot — support agents on Oxlo", fill_width=True, delete_cache=CACHE_SWEEP) as demo:
        state = gr.State(None)
        # This browser's own conversations (its localStorage); read back as untrusted data (see ui.links).
        recent_store = gr.BrowserState([], storage_key=links.STORAGE_KEY, secret=links.STORAGE_SECRET)
        with gr.Row(elem_classes="sb-header", equal_height=True):
            gr.HTML(
                "<div class='sb-brand'><h1>🤝 supportbot</h1>"
                + render.engine_badge(services.engine_label, live)
                + "</div><div class='sb-sub sb-tagline'>Routes every turn to a fitting model, calls real tools, "
                "builds the ticket as it goes: the agent view beside the chat shows each step.</div>",
                elem_classes="sb-title",
                scale=6,
            )
            copy_btn = gr.Button("🔗 Copy link", elem_id="sb-copy", size="sm", scale=0, min_width=110)
            new_btn = gr.Button("➕ New conversation", size="sm", scale=0, min_width=150)
            if login:
                gr.LoginButton(scale=0, min_width=150, size="sm")
        with gr.Row(equal_height=False, elem_classes="sb-main"):
            with gr.Column(scale=11, min_width=360, elem_classes="sb-chatcol"):
                chatbot = gr.Chatbot(
                    label="Conversation",
                    elem_id="sb-chat",
                    height=CHAT_HEIGHT,
                    min_height=320,
                    show_label=False,
                    group_consecutive_messages=False,
                    buttons=["copy_all"],
                    placeholder="**Ask about an order, a refund or a policy** — or pick an example below.",
                )
                msg = gr.MultimodalTextbox(
                    placeholder="Ask the support agent…",
                    file_types=["image", ".log", ".txt", ".gz"],
                    file_count="multiple",
                    show_label=False,
                    elem_id="sb-box",
                    stop_btn=False,  # shown only while a turn runs
                )
                with gr.Row(elem_classes="sb-status"):
                    meter = gr.HTML(render.context_meter(Session()), elem_classes="sb-meterbox")
                    note = gr.HTML("", elem_classes="sb-notebox")
                # Shown only while a call awaits a human's approval (SUPPORTBOT_CONFIRM_TOOLS). It never
                # writes the message box: a draft typed meanwhile is kept.
                with gr.Row(visible=False, equal_height=True, elem_classes="sb-approval") as approval_row:
                    approval_md = gr.Markdown()
                    approve_btn = gr.Button("✅ Approve", variant="primary", size="sm", min_width=110, scale=0)
                    deny_btn = gr.Button("🚫 Deny", variant="stop", size="sm", min_width=110, scale=0)
                with gr.Row(elem_classes="sb-examples"):
                    example_btns = [gr.Button(label, size="sm", min_width=60) for label, _, _ in EXAMPLES]
            with gr.Column(scale=9, min_width=360, elem_classes="sb-panels"):
                with gr.Tabs():
                    with gr.Tab("🔎 Agent view", elem_classes="sb-agent"):
                        turn_sel = gr.Dropdown(
                            agent_view.turn_choices(Session()),
                            value=LATEST,
                            label="Turn shown",
                            show_label=False,
                            container=False,
                            elem_classes="sb-turnpick",
                        )
                        timeline = gr.HTML(
                            agent_view.timeline_html(Session(), LATEST, services.pricing, settings.plan),
                            elem_classes="sb-timelinebox",
                        )
                        ticket_html = gr.HTML(render.ticket_chips({}), elem_classes="sb-ticket-chips")
                        ticket_json = gr.JSON(value={}, label="Ticket (JSON)", elem_classes="sb-ticket-json")
                    with gr.Tab("📊 Cost"):
                        plan = gr.Dropdown(
                            [(f"Oxlo {p.name.title()}", p.name) for p in services.pricing.plans],
                            value=settings.plan,
                            label="Flat-priced Oxlo plan to compare with token prices",
                        )
                        first = usage_view.render(Session(), services.pricing, settings.plan)
                        usage_html = gr.HTML(first.html, elem_classes="sb-usage")
                        usage_plot = gr.LinePlot(
                            first.frame,
                            x="turn",
                            y="usd",
                            color="pricing",
                            title="Cumulative cost (USD)",
                            x_title="turn",
                            y_title="USD",
                            color_title="pricing",
                            height=240,
                        )
                    with gr.Tab("🕘 Conversations"):
                        recent_list = gr.Radio(
                            [], label="Recent conversations in this browser", elem_classes="sb-recent"
                        )
                        gr.Markdown(
                            "Only this browser keeps this list. After the first message the address bar names the "
                            "conversation: reload or share the address to come back (a shared link goes on as a copy)."
                        )
                        export_btn = gr.Button("Export conversation")
                        export_files = gr.File(label="Files", file_count="multiple", interactive=False)
                        import_btn = gr.UploadButton("Import a conversation JSON", file_types=[".json"])
                        share_md = gr.Markdown()
                    with gr.Tab("⚙️ Settings"):
                        model = gr.Dropdown(model_choices(services), value=AUTO, label="Model")
                        steps = gr.Dropdown(list(STEP_MODES), value=STEP_MODES[0], label="Agent steps in the chat")
                        modes = [("inline (free)", "inline"), ("extraction (+1 request)", "extraction")]
                        ticket_mode = gr.Dropdown(
                            modes if settings.extraction_allowed else modes[:1],
                            value=settings.ticket_mode,
                            label="Ticket mode",
                            interactive=settings.extraction_allowed,  # SUPPORTBOT_ALLOW_EXTRACTION
                        )
                        with gr.Accordion("All tool calls as JSON", open=False):
                            tool_json = gr.JSON(value=[], show_label=False)
                    with gr.Tab("⚖️ Compare", elem_id="sb-compare-tab"):
                        slot = {"concurrency_limit": limit, "concurrency_id": TURNS}  # two turns' work, one slot
                        compare.build_tab(pg, model_choices(services), slot)
                    qa = build_qa_tab(pg, state)  # its own events: /save_scenario, /run_scenarios, /simulate
        # Not shown: what scripts call, and the id the address bar follows.
        session_json = gr.JSON(visible=False)
        load_id = gr.Textbox(visible=False)
        session_btn = gr.Button(visible=False)
        load_btn = gr.Button(visible=False)
        api_btn = gr.Button(visible=False)
        api_tools, api_routes = gr.HTML(visible=False), gr.HTML(visible=False)
        approve_id, approve_answer = gr.Textbox(visible=False), gr.Textbox(visible=False)
        approve_api = gr.Button(visible=False)
        cid_box = gr.HTML("", visible="hidden", elem_id="sb-cid")  # rendered (hidden), so its change event runs

        detail = [tool_json, ticket_html, ticket_json, usage_html, usage_plot, turn_sel]
        panels = [chatbot, timeline, meter, *detail]
        conv = [cid_box, recent_store, recent_list]
        turn_inputs = [model, steps, ticket_mode, state, plan, turn_sel, qa.simulate]
        turn_outputs = [msg, note, chatbot, timeline, meter, turn_sel, cid_box, state]
        finish_inputs = [steps, state, plan, turn_sel, recent_store]
        finish_outputs = [msg, note, *panels, *conv]
        turn_opts = {
            "api_visibility": "private",
            "concurrency_limit": limit,
            "concurrency_id": TURNS,
            "show_progress": "minimal",
            "show_progress_on": [chatbot],  # never on the box: it stays free for a draft
            # A send while a turn runs reaches the server, which refuses it beside the box (the default
            # "once" would drop it without a word).
            "trigger_mode": "multiple",
        }

        turn_events = []
        sends = [(msg.submit, pg.send, [msg, *turn_inputs])]
        sends += [(btn.click, pg.send_example, [gr.State(i), *turn_inputs]) for i, btn in enumerate(example_btns)]
        for trigger, handler, inputs in sends:
            event = trigger(handler, inputs, turn_outputs, **turn_opts)
            # Runs after the turn, answered or stopped (a cancel still runs what follows it).
            event.then(pg.finish, finish_inputs, finish_outputs, api_visibility="private", show_progress="hidden").then(
                None, None, None, js=links.SCROLL_JS
            )
            turn_events.append(event)
        # Approving or denying resumes the paused turn in an event of its own (the pause held no slot).
        bar = {"fn": pg.approval_bar, "inputs": [state], "outputs": [approval_row, approval_md]}
        for button, handler in ((approve_btn, pg.approve_click), (deny_btn, pg.deny_click)):
            event = button.click(
                handler,
                [steps, ticket_mode, state],
                [chatbot, timeline, meter, state],
                api_visibility="private",
                concurrency_limit=limit,
                concurrency_id=TURNS,
                show_progress="minimal",
                show_progress_on=[chatbot],
            )
            event.then(pg.finish, finish_inputs, finish_outputs, api_visibility="private", show_progress="hidden")
            turn_events.append(event)
        for event in turn_events:  # the bar follows the session after every turn, paused or finished
            event.then(**bar, api_visibility="private", show_progress="hidden")
        # Scripts approve with /approve (call id, yes/no).
        approve_api.click(
            pg.approve,
            [approve_id, approve_answer, state],
            [chatbot, api_tools, api_routes, meter, state],
            api_name="approve",
            concurrency_limit=limit,
            concurrency_id=TURNS,
        ).then(**bar, api_visibility="private", show_progress="hidden")
        msg.stop(None, None, None, cancels=turn_events, api_visibility="private")
        cid_box.change(None, [cid_box], None, js=links.URL_JS)
        copy_btn.click(None, None, None, js=links.COPY_JS)

        # Scripts: /chat keeps its inputs and outputs (message, model, steps, ticket mode -> chat and panels).
        api_btn.click(
            pg.chat,
            [msg, model, steps, ticket_mode, state, qa.simulate],
            [chatbot, api_tools, api_routes, meter, msg, state],
            api_name="chat",
            concurrency_limit=limit,
            concurrency_id=TURNS,
        )  # no approval bar: a script has no page to show it on, it answers a pause with /approve
        steps.change(pg.steps_changed, [steps, state], [chatbot], api_visibility="private")
        turn_sel.input(pg.turn_picked, [turn_sel, state, plan], [timeline], api_visibility="private")
        plan.input(
            pg.plan_changed, [plan, state, turn_sel], [timeline, usage_html, usage_plot], api_visibility="private"
        )
        # A turn still streaming into the old session would otherwise write it back into the state.
        new_outputs = [*panels, *conv, msg, note, state]
        after = {**bar, "api_visibility": "private", "show_progress": "hidden"}  # the approval row follows too
        new_btn.click(
            pg.new_conversation, [steps, plan], new_outputs, api_name="new_conversation", cancels=turn_events
        ).then(**after)
        # The chat's trash icon starts a new conversation too: clearing only the view would come back next turn.
        chatbot.clear(
            pg.new_conversation, [steps, plan], new_outputs, api_visibility="private", cancels=turn_events
        ).then(**after)
        session_btn.click(pg.session_payload, [state], [session_json], api_name="session")
        load_btn.click(pg.load, [load_id, state], [session_json, state], api_name="load").then(
            pg.redraw, [steps, state, plan], panels, api_visibility="private"
        ).then(**after)
        demo.load(
            pg.page_load, [steps, state, plan, recent_store], [*panels, *conv, state], api_visibility="private"
        ).then(**after)
        recent_list.input(
            pg.open_recent,
            [recent_list, steps, state, plan, recent_store],
            [*panels, *conv, state, note],
            api_visibility="private",
        ).then(**after)
        export_btn.click(pg.export, [state], [export_files, share_md], api_name="export")
        import_btn.upload(
            pg.import_conversation,
            [import_btn, steps, state, plan, recent_store],
            [*panels, *conv, state],
            api_visibility="private",
        ).then(**after)
    demo.turn_pool = pool
    return demo


async def check_live_catalog(services: Services) -> None:
    """Flag models the live service does not list; failures only warn (the app still starts)."""
    try:
        await services.check_catalog()
    except ApiError as exc:  # start anyway, say why
        key = services.settings.api_key.get_secret_value() if services.settings.api_key else None
        print(f"supportbot: could not check the catalog against GET /models: {redact(str(exc), key)}")


def prepare(settings: Settings) -> Services:
    """Services for a launch, with the live catalog check done once at start-up."""
    services = Services.create(settings)
    if services.clients.engine is None:
        asyncio.run(check_live_catalog(services))
    return services
