"""The Blocks layout: components and the wiring of their events to ``ui.handlers``.

All per-user data lives in ``gr.State``; the handlers are plain methods tested without a server.
"""

from __future__ import annotations

import asyncio
import functools
import os
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
from supportbot.ui import render, usage_view
from supportbot.ui.handlers import AUTO, EXAMPLES, Playground, example_message
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
        with gr.Row(elem_classes="sb-header", equal_height=True):
            gr.HTML(
                "<h1>🤝 supportbot</h1><div class='sb-sub'>Routes every turn to a fitting model, calls real tools, "
                "builds the ticket as it goes.</div>",
                scale=5,
            )
            gr.HTML(render.engine_badge(services.engine_label, live), scale=3)
            new_btn = gr.Button("➕ New conversation", variant="secondary", scale=1, min_width=170, size="sm")
            if login:
                gr.LoginButton(scale=1, min_width=170, size="sm")
        with gr.Row(equal_height=False):
            with gr.Column(scale=11, min_width=520):
                with gr.Row():
                    model = gr.Dropdown(model_choices(services), value=AUTO, label="Model", scale=3, min_width=200)
                    steps = gr.Dropdown(
                        list(STEP_MODES), value="all", label="Agent steps in chat", scale=2, min_width=120
                    )
                    modes = [("inline (free)", "inline"), ("extraction (+1 request)", "extraction")]
                    ticket_mode = gr.Dropdown(
                        modes if settings.extraction_allowed else modes[:1],
                        value=settings.ticket_mode,
                        label="Ticket mode",
                        scale=2,
                        min_width=150,
                        interactive=settings.extraction_allowed,  # SUPPORTBOT_ALLOW_EXTRACTION
                    )
                chatbot = gr.Chatbot(
                    label="Conversation",
                    height=370,
                    show_label=False,
                    group_consecutive_messages=False,
                    buttons=["copy_all"],
                    placeholder="**Ask about an order, a refund or a policy** — or pick an example below.",
                )
                msg = gr.MultimodalTextbox(
                    placeholder="Type a message; attach screenshots (PNG, JPEG, WebP, GIF, BMP) "
                    "or logs (.log, .txt, .gz)…",
                    file_types=["image", ".log", ".txt", ".gz"],
                    file_count="multiple",
                    show_label=False,
                    stop_btn=True,
                )
                meter = gr.HTML(render.context_meter(Session()))
                # Shown only while a call awaits a human's approval (SUPPORTBOT_CONFIRM_TOOLS).
                with gr.Row(visible=False, equal_height=True, elem_classes="sb-approval") as approval_row:
                    approval_md = gr.Markdown()
                    approve_btn = gr.Button("✅ Approve", variant="primary", size="sm", min_width=110, scale=0)
                    deny_btn = gr.Button("🚫 Deny", variant="stop", size="sm", min_width=110, scale=0)
                with gr.Row(elem_classes="sb-examples"):
                    example_btns = [gr.Button(label, size="sm", min_width=60) for label, _, _ in EXAMPLES]
            with gr.Column(scale=9, min_width=420, elem_classes="sb-panels"):
                with gr.Tabs():
                    with gr.Tab("🔧 Tools"):
                        tool_html = gr.HTML(render.tools_html(Session()))
                        with gr.Accordion("All calls as JSON", open=False):
                            tool_json = gr.JSON(value=[], show_label=False)
                    with gr.Tab("🎫 Ticket"):
                        ticket_html = gr.HTML(render.ticket_chips({}))
                        ticket_json = gr.JSON(value={}, show_label=False, elem_classes="sb-ticket-json")
                    with gr.Tab("🧭 Route"):
                        route_html = gr.HTML(render.routes_html(Session()))
                    with gr.Tab("📊 Usage"):
                        plan = gr.Dropdown(
                            [(f"Oxlo {p.name}", p.name) for p in services.pricing.plans],
                            value=settings.plan,
                            label="Flat-priced plan to compare",
                            container=False,
                        )
                        usage_html = gr.HTML(
                            usage_view.render(Session(), services.pricing, settings.plan)[0], elem_classes="sb-usage"
                        )
                        usage_plot = gr.LinePlot(
                            usage_view.empty_plot(),
                            x="turn",
                            y="usd",
                            color="pricing",
                            title="Cumulative cost (USD)",
                            x_title="turn",
                            y_title="USD",
                            height=220,
                        )
                    with gr.Tab("💾 Export"):
                        gr.Markdown(
                            "Download this conversation (JSON re-imports; Markdown reads as a transcript) "
                            "and its ticket."
                        )
                        export_btn = gr.Button("Export conversation")
                        export_files = gr.File(label="Files", file_count="multiple", interactive=False)
                        import_btn = gr.UploadButton("Import a conversation JSON", file_types=[".json"])
                        share_md = gr.Markdown()
        session_json = gr.JSON(visible=False)
        load_id = gr.Textbox(visible=False)
        session_btn = gr.Button(visible=False)
        load_btn = gr.Button(visible=False)
        approve_id, approve_answer = gr.Textbox(visible=False), gr.Textbox(visible=False)
        approve_api = gr.Button(visible=False)

        live_outputs = [chatbot, tool_html, route_html, meter]
        detail_outputs = [tool_json, ticket_html, ticket_json, usage_html, usage_plot]
        outputs = [*live_outputs, *detail_outputs]
        turn_inputs = [msg, model, steps, ticket_mode, state]

        chat_event = msg.submit(
            pg.chat,
            turn_inputs,
            [*live_outputs, msg, state],
            api_name="chat",
            concurrency_limit=limit,
            concurrency_id=TURNS,
            show_progress="minimal",
        )
        # Runs after the turn ends, stopped or not, so the panels always match the session.
        chat_event.then(pg.details, [state, plan], detail_outputs, api_visibility="private", concurrency_limit=limit)
        turn_events = [chat_event]
        for i, btn in enumerate(example_btns):
            event = btn.click(functools.partial(example_message, i), None, msg, api_visibility="private").then(
                pg.chat,
                turn_inputs,
                [*live_outputs, msg, state],
                concurrency_limit=limit,
                concurrency_id=TURNS,
                api_visibility="private",
            )
            event.then(pg.details, [state, plan], detail_outputs, api_visibility="private", concurrency_limit=limit)
            turn_events.append(event)
        # Approving or denying resumes the paused turn in an event of its own (the pause held no slot).
        resume_outputs = [*live_outputs, state]
        resume_events = [
            approve_api.click(
                pg.approve,
                [approve_id, approve_answer, state],
                resume_outputs,
                api_name="approve",
                concurrency_limit=limit,
                concurrency_id=TURNS,
            ),
            approve_btn.click(
                pg.approve_click,
                [steps, ticket_mode, state],
                resume_outputs,
                api_visibility="private",
                concurrency_limit=limit,
                concurrency_id=TURNS,
            ),
            deny_btn.click(
                pg.deny_click,
                [steps, ticket_mode, state],
                resume_outputs,
                api_visibility="private",
                concurrency_limit=limit,
                concurrency_id=TURNS,
            ),
        ]
        for event in resume_events:
            event.then(pg.details, [state, plan], detail_outputs, api_visibility="private", concurrency_limit=limit)
        turn_events += resume_events
        for event in [*turn_events]:  # the bar follows the session after every turn, paused or finished
            event.then(pg.approval_bar, [state], [approval_row, approval_md], api_visibility="private")
        msg.stop(None, None, None, cancels=turn_events, api_visibility="private")

        steps.change(pg.steps_changed, [steps, state], live_outputs, api_visibility="private")
        plan.change(pg.details, [state, plan], detail_outputs, api_visibility="private")
        # A turn still streaming into the old session would otherwise write it back into the state.
        bar = {"fn": pg.approval_bar, "inputs": [state], "outputs": [approval_row, approval_md]}
        new_btn.click(
            pg.new_conversation, [steps, plan], [*outputs, msg, state], api_name="new_conversation", cancels=turn_events
        ).then(**bar, api_visibility="private")
        session_btn.click(pg.session_payload, [state], [session_json], api_name="session")
        load_btn.click(pg.load, [load_id, state], [session_json, state], api_name="load").then(
            pg.redraw, [steps, state, plan], outputs, api_visibility="private"
        ).then(**bar, api_visibility="private")
        demo.load(pg.page_load, [steps, state, plan], [*outputs, state], api_visibility="private").then(
            **bar, api_visibility="private"
        )
        export_btn.click(pg.export, [state], [export_files, share_md], api_name="export")
        import_btn.upload(
            pg.import_conversation, [import_btn, steps, state, plan], [*outputs, state], api_visibility="private"
        ).then(**bar, api_visibility="private")
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
