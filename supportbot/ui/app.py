"""The Blocks layout and its event handlers. All per-user data lives in gr.State."""

from __future__ import annotations

import asyncio
import copy
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import gradio as gr
import openai

from supportbot.config import ASSETS_DIR, PACKAGE_DIR, Settings, redact
from supportbot.conversation import Services, TurnRunner
from supportbot.errors import ConfigError, SupportbotError
from supportbot.events import ErrorEvent, TextDelta, ToolCallFinished, ToolCallStarted
from supportbot.session import Session
from supportbot.ui import render, usage_view
from supportbot.ui.render import STEP_MODES, LiveTurn
from supportbot.ui.streaming import batches

SAMPLES = ASSETS_DIR / "samples"
AUTO = "auto"
EXAMPLES: list[tuple[str, str, list[str]]] = [
    ("📦 Order", "Where is my order #48291? It was supposed to arrive yesterday and I am getting worried.", []),
    ("💸 Refund", "I'd like a refund for order #48258, it never arrived.", []),
    ("📖 Policy", "What is your return policy for opened items?", []),
    ("🙋 Escalation", "This is ridiculous!!! My order #48291 is late AGAIN. I want to talk to a human NOW.", []),
    ("🇪🇸 Español", "Hola, ¿dónde está mi pedido #48291? Debía llegar ayer.", []),
    ("🖼️ Screenshot", "The checkout page shows this error when I try to pay. What should I do?", ["checkout-error.png"]),
    ("📄 Long log", "Our integration keeps failing since this morning, here is the service log. What is going on?", ["checkout-service.log"]),
]


def model_choices(services: Services) -> list[tuple[str, str]]:
    """'Auto' then every catalog model, grouped by its first category, vision marked."""
    choices = [("Auto — route every turn", AUTO)]
    for category in ("triage", "reasoning", "multilingual", "long_context", "agentic", "vision"):
        for m in services.catalog:
            if m.categories[0] == category:
                flag = " ⚠ not listed by the service" if m.id in services.catalog.unlisted else ""
                choices.append((f"{category.replace('_', ' ').title()} · {m.label}{flag}", m.id))
    return choices


def launch_options(settings: Settings, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Keyword arguments for launch(): host, port, upload cap, history off."""
    env = dict(os.environ if env is None else env)
    on_spaces = env.get("SYSTEM") == "spaces" or bool(env.get("SPACE_ID"))
    host = env.get("GRADIO_SERVER_NAME") or ("0.0.0.0" if on_spaces else "127.0.0.1")
    raw_port = env.get("GRADIO_SERVER_PORT") or "7860"
    if not raw_port.isdigit() or not 0 < int(raw_port) < 65536:
        raise ConfigError("GRADIO_SERVER_PORT", f"must be a port number from 1 to 65535 (got {raw_port!r})")
    port = int(raw_port)
    return {
        "server_name": host,
        "server_port": port,
        "max_file_size": f"{settings.max_upload_mb}mb",
        "run_history": False,  # logs and screenshots can hold private data
        "max_threads": max(40, settings.concurrency_limit + 8),
        "theme": gr.themes.Soft(primary_hue="indigo"),
        "css": (PACKAGE_DIR / "ui" / "styles.css").read_text(encoding="utf-8"),
        "footer_links": ["api", "gradio"],
    }


def build_app(settings: Settings | None = None, services: Services | None = None) -> gr.Blocks:
    """Build the playground; nothing here is shared between users except read-only services."""
    settings = settings or Settings.load()
    services = services or Services.create(settings)
    runner = TurnRunner(services)
    runner.purge_expired()  # then again after turns, at most hourly
    live = services.clients.engine is None

    def live_panels(session: Session, mode: str, live_turn: LiveTurn | None = None) -> tuple:
        """What changes while a turn streams: cheap to render, sent on every redraw."""
        return render.chat_view(session, mode, live_turn), render.tools_html(session), render.routes_html(session), render.context_meter(session)

    def detail_panels(session: Session, plan_name: str | None = None) -> tuple:
        """What changes once per turn (ticket, usage, plot): rendered after the turn, not per delta."""
        usage_html, plot = usage_view.render(session, services.pricing, plan_name or settings.plan)
        return (copy.deepcopy(session.tool_calls[::-1]), render.ticket_chips(session.ticket, session.ticket_error),
                copy.deepcopy(session.ticket), usage_html, plot)

    def panels(session: Session, mode: str, plan_name: str | None) -> tuple:
        return (*live_panels(session, mode), *detail_panels(session, plan_name))

    with gr.Blocks(title="supportbot — support agents on Oxlo", fill_width=True) as demo:
        state = gr.State(None)
        with gr.Row(elem_classes="sb-header", equal_height=True):
            gr.HTML("<h1>🤝 supportbot</h1><div class='sb-sub'>Routes every turn to a fitting model, calls real tools, builds the ticket as it goes.</div>", scale=5)
            gr.HTML(render.engine_badge(services.engine_label, live), scale=3)
            new_btn = gr.Button("➕ New conversation", variant="secondary", scale=1, min_width=170, size="sm")
        with gr.Row(equal_height=False):
            with gr.Column(scale=11, min_width=520):
                with gr.Row():
                    model = gr.Dropdown(model_choices(services), value=AUTO, label="Model", scale=3, min_width=200)
                    steps = gr.Dropdown(list(STEP_MODES), value="all", label="Agent steps in chat", scale=2, min_width=120)
                    ticket_mode = gr.Dropdown([("inline (free)", "inline"), ("extraction (+1 request)", "extraction")],
                                              value=settings.ticket_mode, label="Ticket mode", scale=2, min_width=150)
                chatbot = gr.Chatbot(label="Conversation", height=370, show_label=False, group_consecutive_messages=False, buttons=["copy_all"],
                                     placeholder="**Ask about an order, a refund or a policy** — or pick an example below.")
                msg = gr.MultimodalTextbox(
                    placeholder="Type a message; attach screenshots (PNG, JPEG, WebP, GIF, BMP) or logs (.log, .txt, .gz)…",
                    file_types=["image", ".log", ".txt", ".gz"], file_count="multiple", show_label=False, stop_btn=True,
                )
                meter = gr.HTML(render.context_meter(Session()))
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
                        plan = gr.Dropdown([(f"Oxlo {p.name}", p.name) for p in services.pricing.plans], value=settings.plan,
                                           label="Flat-priced plan to compare", container=False)
                        usage_html = gr.HTML(usage_view.render(Session(), services.pricing, settings.plan)[0], elem_classes="sb-usage")
                        usage_plot = gr.LinePlot(usage_view.empty_plot(), x="turn", y="usd", color="pricing", title="Cumulative cost (USD)",
                                                 x_title="turn", y_title="USD", height=220)
                    with gr.Tab("💾 Export"):
                        gr.Markdown("Download this conversation (JSON re-imports; Markdown reads as a transcript) and its ticket.")
                        export_btn = gr.Button("Export conversation")
                        export_files = gr.File(label="Files", file_count="multiple", interactive=False)
                        import_btn = gr.UploadButton("Import a conversation JSON", file_types=[".json"])
                        share_md = gr.Markdown()
        session_json = gr.JSON(visible=False)
        load_id = gr.Textbox(visible=False)
        session_btn = gr.Button(visible=False)
        load_btn = gr.Button(visible=False)

        live_outputs = [chatbot, tool_html, route_html, meter]
        detail_outputs = [tool_json, ticket_html, ticket_json, usage_html, usage_plot]
        outputs = [*live_outputs, *detail_outputs]

        async def chat(message: dict | str | None, model_id: str = AUTO, mode: str = "all", tmode: str = "inline",
                       session: Session | None = None, progress: gr.Progress = gr.Progress()):
            """Run one turn: stream the answer and tool calls; the detail panels follow when it ends."""
            session = session or Session()
            text, files = _parse_message(message)
            live_turn = LiveTurn(session.turn + 1)
            try:
                events = runner.run(session, text, files, selected=model_id or AUTO, ticket_mode=tmode or settings.ticket_mode,
                                    progress=lambda f, d: progress(f, desc=d))
                async for batch in batches(events):
                    for event in batch:
                        if isinstance(event, TextDelta):
                            live_turn.text += event.text
                        elif isinstance(event, ToolCallStarted):
                            live_turn.pending[event.call_id] = (event.name, event.arguments)
                        elif isinstance(event, ToolCallFinished):
                            live_turn.pending.pop(event.call_id, None)
                        elif isinstance(event, ErrorEvent):
                            gr.Warning(event.message)
                    yield (*live_panels(session, mode, live_turn), None, session)
            except SupportbotError as exc:
                # Bad input (all checked before the turn starts): the error names the problem, the
                # message stays in the box and the session is untouched. Scripts get it as an exception.
                raise gr.Error(str(exc), title="Could not send that") from None
            yield (*live_panels(session, mode), None, session)

        def details(session: Session | None, plan_name: str | None = None):
            return detail_panels(session or Session(), plan_name)

        chat_event = msg.submit(chat, [msg, model, steps, ticket_mode, state], [*live_outputs, msg, state],
                                api_name="chat", concurrency_limit=settings.concurrency_limit, show_progress="minimal")
        # Runs after the turn ends, stopped or not, so the panels always match the session.
        chat_event.then(details, [state, plan], detail_outputs, api_visibility="private", concurrency_limit=settings.concurrency_limit)

        turn_events = [chat_event]
        for btn, (_, text, files) in zip(example_btns, EXAMPLES):
            example = {"text": text, "files": [str(SAMPLES / f) for f in files]}
            event = btn.click(lambda ex=example: ex, None, msg, api_visibility="private").then(
                chat, [msg, model, steps, ticket_mode, state], [*live_outputs, msg, state],
                concurrency_limit=settings.concurrency_limit, api_visibility="private")
            event.then(details, [state, plan], detail_outputs, api_visibility="private", concurrency_limit=settings.concurrency_limit)
            turn_events.append(event)
        msg.stop(None, None, None, cancels=turn_events, api_visibility="private")

        def redraw(mode: str, session: Session | None, plan_name: str | None):
            return panels(session or Session(), mode, plan_name)

        # Only the chat and its neighbours depend on the steps mode.
        steps.change(lambda mode, session: live_panels(session or Session(), mode), [steps, state], live_outputs,
                     api_visibility="private")
        plan.change(details, [state, plan], detail_outputs, api_visibility="private")

        def new_conversation(mode: str, plan_name: str | None = None):
            """Forget everything: the agent's memory too."""
            fresh = Session()
            return (*panels(fresh, mode, plan_name), None, fresh)

        # A turn still streaming into the old session would otherwise write it back into the state.
        new_btn.click(new_conversation, [steps, plan], [*outputs, msg, state], api_name="new_conversation", cancels=turn_events)

        def session_payload(session: Session | None) -> dict:
            """The whole session as JSON: messages, tool_calls, routes, usage, ticket."""
            return (session or Session()).to_json()

        session_btn.click(session_payload, [state], [session_json], api_name="session")

        def load(conversation_id: str, session: Session | None):
            """Reload a stored conversation by id (for scripts; the page uses ?c=<id>)."""
            loaded = services.history.load((conversation_id or "").strip())
            if loaded is None:
                raise gr.Error(f"No conversation with id {conversation_id!r} is stored here (it may have expired).")
            loaded.loaded = True
            return loaded.to_json(), loaded

        load_btn.click(load, [load_id, state], [session_json, state], api_name="load").then(
            redraw, [steps, state, plan], outputs, api_visibility="private")

        def on_page_load(mode: str, session: Session | None, plan_name: str | None, request: gr.Request):
            cid = request.query_params.get("c") if request else None
            if cid:
                loaded = services.history.load(cid)
                if loaded is None:
                    gr.Warning("That conversation link has expired or never existed; starting a new one.")
                else:
                    loaded.loaded = True
                    return (*panels(loaded, mode, plan_name), loaded)
            session = session or Session()
            return (*panels(session, mode, plan_name), session)

        demo.load(on_page_load, [steps, state, plan], [*outputs, state], api_visibility="private")

        def export(session: Session | None):
            session = session or Session()
            out = Path(tempfile.mkdtemp(prefix="supportbot-export-"))
            cid = session.conversation_id
            (out / f"conversation-{cid}.json").write_text(services.history.export_json(session), encoding="utf-8")
            (out / f"transcript-{cid}.md").write_text(services.history.export_markdown(session), encoding="utf-8")
            (out / f"ticket-{cid}.json").write_text(json.dumps(session.ticket, indent=2, ensure_ascii=False), encoding="utf-8")
            link = f"Reload this conversation any time with `?c={cid}` on this page's URL."
            return [str(p) for p in sorted(out.iterdir())], link

        export_btn.click(export, [state], [export_files, share_md], api_name="export")

        def import_conversation(file: Any, mode: str, session: Session | None, plan_name: str | None):
            try:
                imported = services.history.import_json(Path(_path_of(file)).read_text(encoding="utf-8"))
            except (SupportbotError, UnicodeDecodeError, OSError) as exc:
                gr.Warning(f"Could not import that file: {exc}")
                session = session or Session()
                return (*panels(session, mode, plan_name), session)
            services.history.save(imported)
            return (*panels(imported, mode, plan_name), imported)

        import_btn.upload(import_conversation, [import_btn, steps, state, plan], [*outputs, state], api_visibility="private")
    return demo


def _path_of(file: Any) -> str:
    if isinstance(file, dict):
        return file.get("path") or file.get("name")
    return getattr(file, "path", None) or getattr(file, "name", None) or str(file)


def _parse_message(message: dict | str | None) -> tuple[str, list[str]]:
    """Text and file paths from a MultimodalTextbox value (or plain text from scripts)."""
    if message is None:
        return "", []
    if isinstance(message, str):
        return message, []
    files = [_path_of(f) for f in message.get("files") or []]
    return str(message.get("text") or ""), [f for f in files if f]


async def check_live_catalog(services: Services) -> None:
    """Flag models the live service does not list; failures only warn (the app still starts)."""
    try:
        await services.check_catalog()
    except openai.OpenAIError as exc:  # start anyway, say why
        key = services.settings.api_key.get_secret_value() if services.settings.api_key else None
        print(f"supportbot: could not check the catalog against GET /models: {type(exc).__name__}: {redact(str(exc), key)}")


def prepare(settings: Settings) -> Services:
    """Services for a launch, with the live catalog check done once at start-up."""
    services = Services.create(settings)
    if services.clients.engine is None:
        asyncio.run(check_live_catalog(services))
    return services
