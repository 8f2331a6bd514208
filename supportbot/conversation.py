"""One turn, end to end: attachments -> route -> agent -> session, ticket, persistence.

This is the layer the UI calls. It knows nothing of Gradio (the UI passes a
plain progress callback) and nothing of the SDK beyond the agent and ticket
extraction. It owns the rule that a failed turn never corrupts the history.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from supportbot import tokens
from supportbot.agent import SYSTEM_PROMPT, Agent
from supportbot.catalog import Catalog, ModelInfo, load_catalog
from supportbot.client import ClientFactory
from supportbot.config import Settings
from supportbot.errors import AttachmentError, SupportbotError
from supportbot.events import (
    Done,
    ErrorEvent,
    Event,
    Notice,
    RoundCompleted,
    RouteChosen,
    TextDelta,
    TicketUpdated,
    ToolCallFinished,
    UsageReported,
)
from supportbot.history import History
from supportbot.images import PreparedImage, prepare_image
from supportbot.logs import LogFile, LogLimits, fence_log, open_log, reduce_log
from supportbot.pricing import Pricing, load_pricing
from supportbot.router import RoutingPolicy, TurnFacts, load_policy, route
from supportbot.session import Session, new_conversation_id
from supportbot.store import Store
from supportbot.ticket import Ticket, build_inline, extract_ticket
from supportbot.tools import REGISTRY, ToolContext

IMAGE_MAGIC = (b"\x89PNG", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp", ".tif", ".tiff", ".heic", ".ico", ".svg"}
# Text typed or sent through the API that is this long and log-like is treated as a log attachment.
INLINE_LOG_CHARS = 4000
KEEP_RECENT_MESSAGES = 6
Progress = Callable[[float, str], None]
# What the model is told happened to a turn that did not end in an answer but whose tool rounds are kept.
STOPPED_NOTE = {"role": "assistant", "content": "(The customer stopped this answer before it finished.)"}
FAILED_NOTE = {"role": "assistant", "content": "(The previous answer failed; see the error shown to the customer.)"}


@dataclass
class Services:
    """What every session shares: read-only configuration and thread-safe stores."""

    settings: Settings
    catalog: Catalog
    policy: RoutingPolicy
    pricing: Pricing
    store: Store
    history: History
    clients: ClientFactory
    agent: Agent

    @classmethod
    def create(cls, settings: Settings, engine: Any = None) -> Services:
        """Load assets, open the database and make the client factory."""
        settings.check()
        catalog = load_catalog(settings.catalog_path)
        data_dir = Path(settings.data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        db = data_dir / "supportbot.sqlite3"
        clients = ClientFactory(settings, engine)
        return cls(settings, catalog, load_policy(catalog=catalog), load_pricing(), Store(db), History(db), clients, Agent(settings, clients))

    @property
    def engine_label(self) -> str:
        """What the header badge says."""
        return "Offline demo engine" if self.clients.engine is not None else f"Live — Oxlo at {self.settings.base_url}"

    async def check_catalog(self) -> Catalog:
        """Flag catalog models the live service does not list (never drop them)."""
        if self.clients.engine is None:
            self.catalog = self.catalog.with_service_ids(await self.clients.list_models())
        return self.catalog


@dataclass
class Attachments:
    images: list[Path] = field(default_factory=list)  # read (and size-checked) by prepare_image
    logs: list[LogFile] = field(default_factory=list)


def sort_files(files: list[str | Path], text: str, settings: Settings) -> tuple[str, Attachments]:
    """Split uploads into images and logs by content; long log-like text becomes a log."""
    found = Attachments()
    limits = LogLimits(settings.max_upload_mb * 2**20, settings.max_gz_expanded_mb * 2**20)
    for f in files:
        path = Path(f)
        with path.open("rb") as fh:
            head = fh.read(16)
        is_image = head.startswith(IMAGE_MAGIC) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")
        if is_image or path.suffix.lower() in IMAGE_SUFFIXES:
            found.images.append(path)
        else:
            found.logs.append(open_log(path, path.name, limits))
    if len(found.images) > settings.max_images_per_turn:
        raise AttachmentError(f"{len(found.images)} images", f"at most {settings.max_images_per_turn} images per message; send the rest in the next one.")
    if len(text) > INLINE_LOG_CHARS and tokens.classify(text) == "log":
        found.logs.append(open_log(text, "pasted.log", limits))
        text = ""
    return text, found


class TurnRunner:
    """Runs turns for sessions; one per app, safe to share (all state is in the Session)."""

    def __init__(self, services: Services) -> None:
        self.s = services
        self._last_purge = float("-inf")
        # The system prompt and tool schemas never change: estimate them once, not every turn.
        self._overhead_tokens = tokens.estimate_tokens(SYSTEM_PROMPT) + tokens.estimate_tools(REGISTRY.schemas())

    def purge_expired(self, every_s: float = 3600.0) -> int:
        """Apply SUPPORTBOT_RETENTION_DAYS at most once per ``every_s``: a hosted demo runs for weeks."""
        days = self.s.settings.retention_days
        if not days or time.monotonic() - self._last_purge < every_s:
            return 0
        self._last_purge = time.monotonic()
        return self.s.history.purge_older_than(days)

    def facts(self, session: Session, text: str, found: Attachments) -> TurnFacts:
        """What the router needs for this turn."""
        return TurnFacts(
            text=text,
            images=len(found.images),
            log_tokens=sum(log.est_tokens for log in found.logs),
            history_tokens=tokens.estimate_messages(session.history),
            overhead_tokens=self._overhead_tokens,
            output_tokens=self.s.settings.max_output_tokens,
            history=[m["content"] for m in session.messages if m["role"] == "user" and isinstance(m.get("content"), str)],
        )

    def decide(self, session: Session, text: str, found: Attachments, selected: str | None):
        """Route a turn (pure, cheap: used by the UI's context meter too)."""
        return route(self.facts(session, text, found), self.s.catalog, self.s.policy, selected)

    async def run(
        self,
        session: Session,
        text: str,
        files: list[str | Path] | None = None,
        *,
        selected: str | None = None,
        ticket_mode: str | None = None,
        progress: Progress | None = None,
    ) -> AsyncIterator[Event]:
        """Run one turn and yield its events; ``session`` is updated as they happen."""
        text = (text or "").strip()
        if not text and not files:
            raise SupportbotError("Type a message or attach a screenshot or log first.")
        # Checked and set before the first await: two turns at once would each overwrite the other's history.
        if session.busy:
            raise SupportbotError("This conversation is still answering the previous message: wait for it, or press stop.")
        session.busy = True
        try:
            async for event in self._run(session, text, list(files or []), selected, ticket_mode or self.s.settings.ticket_mode,
                                         progress or (lambda _f, _d: None)):
                yield event
        finally:
            session.busy = False

    async def _run(self, session: Session, text: str, files: list[str | Path], selected: str | None, ticket_mode: str,
                   progress: Progress) -> AsyncIterator[Event]:
        progress(0.05, "Reading attachments")
        text, found = await asyncio.to_thread(sort_files, files, text, self.s.settings)
        decision = self.decide(session, text, found, selected)
        model = self.s.catalog.get(decision.model)
        images = [await asyncio.to_thread(self._image, path, model) for path in found.images]
        progress(0.3, "Preparing logs")
        log_blocks, log_meta = await asyncio.to_thread(self._logs, found.logs, decision.reduce_logs_to)
        if session.loaded:
            # A reloaded or shared conversation continues under a new id, so two people who open
            # the same link never overwrite each other's stored turns.
            session.forked_from, session.conversation_id, session.loaded = session.conversation_id, new_conversation_id(), False
        session.turn += 1
        turn = session.turn
        attachments = [
            {"kind": "image", "filename": im.filename, "format": im.source_format, "width": im.source_width,
             "height": im.source_height, "sent_width": im.width, "sent_height": im.height, "payload_bytes": im.payload_bytes,
             # Not "path": Gradio treats any output dict with a "path" key as a file to serve.
             "local_file": str(path)}
            for im, path in zip(images, found.images)
        ] + log_meta
        session.messages.append({"role": "user", "content": text, "attachments": attachments, "turn": turn})
        yield RouteChosen(decision)
        notices = []
        if any(m["reduced"] for m in log_meta):
            notices.append("Log reduced to fit: " + "; ".join(m["header"] for m in log_meta if m["reduced"]))
        history = session.history
        if decision.rule in ("compact", "manual_compact"):
            history, summary = compact(history, model)
            notices.append(f"Older turns were compacted into a summary to fit {model.name}:\n{summary}")
        for note in notices:
            session.messages.append({"role": "notice", "content": note, "turn": turn})
            yield Notice(note)
        user_msg = self._user_message(text, log_blocks, images)
        session.routes.append({"turn": turn, **decision.to_json()})
        self.s.history.save(session)
        ctx = ToolContext(self.s.store, session.conversation_id, _transcript(session), session.ticket_fields)
        progress(0.5, f"Asking {model.name}")
        answer, done, rounds = "", None, []
        try:
            async for event in self.s.agent.run_turn([*history, user_msg], model, ctx, turn=turn):
                if isinstance(event, ToolCallFinished):
                    session.tool_calls.append({"turn": turn, **event.to_json()})
                    self.s.history.save(session)
                elif isinstance(event, RoundCompleted):
                    rounds += event.messages
                elif isinstance(event, UsageReported):
                    session.usage.append(event.record.to_json())
                elif isinstance(event, Notice):
                    session.messages.append({"role": "notice", "content": event.text, "turn": turn})
                elif isinstance(event, ErrorEvent):
                    session.messages.append({"role": "assistant", "content": answer, "error": event.message, "error_kind": event.kind, "turn": turn, "model": model.id})
                elif isinstance(event, TextDelta):
                    answer += event.text
                elif isinstance(event, Done):
                    done = event
                yield event
        except (asyncio.CancelledError, GeneratorExit):
            # Stopped by the user: show what arrived; the model keeps the tool rounds that completed
            # (their refunds and escalations happened) and forgets the unfinished answer.
            session.messages.append({"role": "assistant", "content": answer, "stopped": True, "turn": turn, "model": model.id})
            if rounds:
                session.history = [*history, _storable(user_msg, images), *rounds, STOPPED_NOTE]
            self._set_ticket(session, self._inline_ticket(session))
            self.s.history.save(session)
            raise
        assert done is not None
        if done.ok:
            session.messages.append({"role": "assistant", "content": done.text, "turn": turn, "model": model.id})
            session.history = [*history, _storable(user_msg, images), *done.messages]
        elif rounds:  # keep completed tool rounds: their side effects (refunds, escalations) happened
            session.history = [*history, _storable(user_msg, images), *rounds, FAILED_NOTE]
        async for event in self._ticket(session, model, ticket_mode, turn):
            yield event
        self.s.history.save(session)
        self.purge_expired()

    def _image(self, path: Path, model: ModelInfo) -> PreparedImage:
        return prepare_image(path, path.name, max_bytes=self.s.settings.max_upload_mb * 2**20, max_edge=model.max_image_edge or 1792)

    @staticmethod
    def _logs(logs: list[LogFile], budget: int | None) -> tuple[list[str], list[dict[str, Any]]]:
        blocks, meta = [], []
        total = sum(log.est_tokens for log in logs) or 1
        for log in logs:
            info = {"kind": "log", "filename": log.filename, "bytes": log.size_bytes, "lines": log.line_count, "est_tokens": log.est_tokens, "reduced": False, "header": ""}
            if budget is not None and total > budget:
                reduced = reduce_log(log, max(500, budget * log.est_tokens // total))
                blocks.append(fence_log(reduced.text, log.filename))
                # The reduced text itself is kept once, in the model history (and so in the stored snapshot).
                info.update(reduced=True, header=reduced.header, sent_tokens=reduced.est_tokens)
            else:
                blocks.append(fence_log(log.read_text(), log.filename))
                info["sent_tokens"] = log.est_tokens
            meta.append(info)
        return blocks, meta

    @staticmethod
    def _user_message(text: str, log_blocks: list[str], images: list[PreparedImage]) -> dict[str, Any]:
        body = "\n\n".join([t for t in [text, *log_blocks] if t]) or "(see attachment)"
        if not images:
            return {"role": "user", "content": body}
        return {"role": "user", "content": [{"type": "text", "text": body}, *(im.content_part() for im in images)]}

    async def _ticket(self, session: Session, model: ModelInfo, mode: str, turn: int) -> AsyncIterator[Event]:
        if mode == "extraction":
            # Models without JSON-schema output get JSON mode with the schema in the prompt (see ticket.py).
            result = await extract_ticket(self.s.clients.get(), model,
                                          conversation_id=session.conversation_id, messages=chat_messages(session),
                                          tool_calls=session.tool_calls, max_tokens=self.s.settings.max_output_tokens, turn=turn)
            for record in result.usage:
                session.usage.append(record.to_json())
                yield UsageReported(record)
            session.ticket_error = result.error
            if result.ticket is None:
                yield TicketUpdated(session.ticket, error=result.error)
                return
            ticket = result.ticket
        else:
            session.ticket_error = None
            ticket = self._inline_ticket(session)
        self._set_ticket(session, ticket)
        yield TicketUpdated(session.ticket)

    @staticmethod
    def _inline_ticket(session: Session) -> Ticket:
        """The ticket from tool facts, the model's update_ticket fields and the text: no request."""
        return build_inline(conversation_id=session.conversation_id, messages=chat_messages(session), tool_calls=session.tool_calls,
                            ticket_fields=session.ticket_fields, previous=Ticket.model_validate(session.ticket) if session.ticket else None)

    def _set_ticket(self, session: Session, ticket: Ticket) -> None:
        session.ticket = ticket.model_dump(mode="json")
        self.s.history.record_ticket(session.conversation_id, session.ticket)



def _storable(user_msg: dict[str, Any], images: list[PreparedImage]) -> dict[str, Any]:
    """The user message as kept for later turns: images become a text note, so a later
    text-only model never receives an image part (and the history stays small)."""
    if not images:
        return user_msg
    text = user_msg["content"][0]["text"]
    notes = [f"[screenshot {im.filename}, {im.source_width}x{im.source_height}: already shown to a vision model]" for im in images]
    return {"role": "user", "content": "\n".join([text, *notes])}


def chat_messages(session: Session) -> list[dict[str, Any]]:
    """The customer's and agent's messages only (no notices), for tickets and summaries."""
    return [m for m in session.messages if m["role"] in ("user", "assistant") and isinstance(m.get("content"), str)]


def _transcript(session: Session, limit: int = 1500) -> str:
    lines = [f"{m['role']}: {m['content']}" for m in chat_messages(session)[-8:] if m["content"]]
    return "\n".join(lines)[-limit:]


def compact(history: list[dict[str, Any]], model: ModelInfo) -> tuple[list[dict[str, Any]], str]:
    """Replace all but the last few messages with a deterministic, visible summary."""
    budget = model.context_window // 2
    keep = KEEP_RECENT_MESSAGES
    while keep > 0 and tokens.estimate_messages(history[-keep:]) > budget:
        keep -= 2
    old, recent = (history[:-keep], history[-keep:]) if keep else (history, [])
    while recent and recent[0].get("role") == "tool":  # never orphan tool results from their call
        old.append(recent.pop(0))
    points = []
    for m in old:
        content = m.get("content")
        if isinstance(content, str) and content and m["role"] in ("user", "assistant"):
            first = content.strip().splitlines()[0] if content.strip() else ""
            points.append(f"- {m['role']}: {first[:160]}")
    if len(points) > 34:  # the opening (the original problem) and the latest points matter most
        points = [*points[:4], f"- … {len(points) - 34} more messages omitted …", *points[-30:]]
    summary = "\n".join(["Summary of earlier turns (compacted to fit the context window):", *points])
    return [{"role": "user", "content": summary}, {"role": "assistant", "content": "Noted; continuing from that summary."}, *recent], summary
