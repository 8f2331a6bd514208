"""Handlers that open, start, export and import conversations (a mixin of ``ui.handlers.Playground``).

Each returns every panel, the links (the id for the address bar, the browser's list of its own
conversations, the list shown) and the session, so the page always shows one conversation whole.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gradio as gr
from gradio.utils import get_upload_folder, is_in_or_equal

from supportbot.errors import SupportbotError
from supportbot.session import Session
from supportbot.storage.history import MAX_IMPORT_BYTES
from supportbot.ui import links
from supportbot.ui.inert import plain_json

if TYPE_CHECKING:
    from supportbot.conversation import TurnRunner
    from supportbot.limits import Allowance
    from supportbot.services import Services

# Panels (chat, timeline, meter, 6 detail panels) and links (id, browser's list, recent list).
PANELS, LINKS = 9, 3
BUSY_NOTE = (
    "<span class='sb-note'>⏳ Still answering: your message stays in the box. Send it when this answer is done, "
    "or press ■ to stop it.</span>"
)


def composer(busy: bool) -> gr.MultimodalTextbox:
    """The message box's buttons while a turn runs (Stop) or not (Send); no value, so what is typed stays."""
    return gr.MultimodalTextbox(submit_btn=not busy, stop_btn=busy)


class Conversations:
    """Opening, starting, exporting and importing conversations."""

    services: Services
    runner: TurnRunner

    # Provided by Playground.
    def panels(self, session: Session, mode: str, plan_name: str | None, allowance=None, selected=None) -> tuple: ...
    def links(self, session: Session, recent: Any) -> tuple: ...
    def allowance(self, request: gr.Request | None, profile: gr.OAuthProfile | None) -> Allowance | None: ...

    def new_conversation(
        self,
        mode: str,
        plan_name: str | None = None,
        request: gr.Request = None,
        profile: gr.OAuthProfile | None = None,
    ) -> tuple:
        """Forget everything: the agent's memory too, and the demo shop's sandbox (a new id gets a fresh one).
        The address bar loses its ?c=; whatever is typed in the box stays.

        Outputs: every panel, the links, the box, the note, the session."""
        fresh = Session()
        panels = self.panels(fresh, mode, plan_name, self.allowance(request, profile))
        return (*panels, "", gr.skip(), gr.Radio(value=None), composer(False), "", fresh)

    def session_payload(self, session: Session | None) -> dict:
        """The whole session as JSON: messages, tool_calls, routes, usage, ticket, ticket_changes."""
        return plain_json((session or Session()).to_json())

    def _stored(self, conversation_id: Any) -> Session | None:
        """A stored conversation by id; None for an unknown or malformed id; SupportbotError if unreadable."""
        cid = conversation_id.strip() if isinstance(conversation_id, str) else ""
        return self.runner.load(cid) if links.CONVERSATION_ID.fullmatch(cid) else None

    def load(self, conversation_id: str, session: Session | None) -> tuple:
        """Reload a stored conversation by id (for scripts; the page uses ?c=<id>)."""
        try:
            loaded = self._stored(conversation_id)
        except SupportbotError as exc:
            raise gr.Error(html.escape(str(exc), quote=False), print_exception=False) from None
        if loaded is None:
            raise gr.Error("No conversation with that id is stored here (it may have expired).", print_exception=False)
        return plain_json(loaded.to_json()), loaded

    def _open(self, cid: Any, mode: str, session: Any, plan_name: Any, recent: Any, allowance: Any) -> tuple:
        """Every panel, the links and the session for the conversation ``cid`` names (else ``session``, with a
        warning saying why)."""
        current = session if isinstance(session, Session) else Session()
        loaded = None
        if cid:
            try:
                loaded = self._stored(cid)
            except SupportbotError as exc:
                why = html.escape(str(exc), quote=False)
                gr.Warning(f"That conversation could not be opened ({why}); starting a new one.")
            else:
                if loaded is None:
                    gr.Warning("That conversation link has expired or never existed; starting a new one.")
        shown = loaded or current
        return (*self.panels(shown, mode, plan_name, allowance), *self.links(shown, recent), shown)

    def page_load(
        self,
        mode: str,
        session: Session | None,
        plan_name: str | None,
        recent: Any = None,
        request: gr.Request = None,
        profile: gr.OAuthProfile | None = None,
    ) -> tuple:
        """A page (re)load: resume ``?c=<id>`` when the link names a stored conversation, and list this browser's
        recent conversations. Outputs: every panel, the links, the session."""
        cid = request.query_params.get("c") if request else None
        return self._open(cid, mode, session, plan_name, recent, self.allowance(request, profile))

    def open_recent(self, cid: Any, mode: str, session: Session | None, plan_name: str | None, recent: Any) -> tuple:
        """A conversation picked from the recent list; refused beside the box while a turn runs.

        Outputs: every panel, the links, the session, the note."""
        if isinstance(session, Session) and session.busy:
            return (*(gr.skip(),) * (PANELS + LINKS + 1), BUSY_NOTE)
        return (*self._open(cid, mode, session, plan_name, recent, None), "")

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
        link = f"Reload this conversation any time with `?c={cid}` on this page's URL (🔗 Copy link copies it)."
        return [str(p) for p in sorted(out.iterdir())], link

    def import_conversation(
        self, file: Any, mode: str, session: Session | None, plan_name: str | None, recent: Any = None
    ) -> tuple:
        """Read an exported conversation as a new one; a bad file is refused with one warning naming it.

        Outputs: every panel, the links, the session."""
        history = self.services.history
        try:
            imported = history.import_json(_read_upload(file))
        except (SupportbotError, UnicodeDecodeError, OSError) as exc:
            # Toasts render HTML, and the message may quote the file's own keys.
            gr.Warning(f"Could not import that file: {html.escape(str(exc), quote=False)}")
            return self._open(None, mode, session, plan_name, recent, None)  # the current one, as it was
        history.save(imported)
        return self._open(None, mode, imported, plan_name, recent, None)


def path_of(file: Any) -> str:
    """The path of an uploaded file however Gradio or a script describes it."""
    if isinstance(file, dict):
        return str(file.get("path") or file.get("name") or "")
    return str(getattr(file, "path", None) or getattr(file, "name", None) or file or "")


def _read_upload(file: Any) -> bytes:
    """The bytes of a file a visitor uploaded (Gradio checks that on the way in; checked again here)."""
    path = Path(path_of(file))
    if not path.is_file() or not is_in_or_equal(path, get_upload_folder()):
        raise SupportbotError("that is not a file uploaded to this page")
    if path.stat().st_size > MAX_IMPORT_BYTES:
        raise SupportbotError(f"the file is larger than {MAX_IMPORT_BYTES // 2**20} MB")
    return path.read_bytes()
