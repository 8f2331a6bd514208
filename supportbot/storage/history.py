"""Conversation persistence: every turn is written to SQLite as it happens.

The caller saves after each event worth keeping (user message, tool call, answer),
so a crash or a reload loses nothing already shown. We keep our own connection to
the store's database file and touch only our two tables, ``conversations`` and
``ticket_versions``. Screenshots are not stored: their data URLs in the model
history become a short text placeholder; the transcript keeps their metadata.

Exports carry a format marker and never a setting or an API key; the conversation
id (an unguessable capability, see ``session.new_conversation_id``) is not exported
either, so a shared file cannot open the original conversation; imports get a new id.
An import is checked against ``storage.schema`` (field by field, strict types, bounded sizes) and
its model memory is rebuilt from its visible messages; a stored row is checked again on load.
"""

from __future__ import annotations

import base64
import io
import json
import sqlite3
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from supportbot.errors import CatalogError, SupportbotError
from supportbot.session import Session, new_conversation_id
from supportbot.storage.schema import Snapshot, first_error, memory_from_messages, stored_session
from supportbot.storage.transcript import export_markdown, scrub

FORMAT = "supportbot.conversation/1"
MAX_IMPORT_BYTES = 20 * 1024 * 1024
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS conversations (id TEXT PRIMARY KEY, created_at REAL NOT NULL, "
    "updated_at REAL NOT NULL, turns INTEGER NOT NULL, snapshot TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS conversations_updated ON conversations(updated_at)",
    "CREATE TABLE IF NOT EXISTS ticket_versions (conversation_id TEXT NOT NULL, version INTEGER NOT NULL, "
    "created_at REAL NOT NULL, ticket TEXT NOT NULL, PRIMARY KEY (conversation_id, version))",
)


# ---------------------------------------------------------------- snapshots


def _image_size(url: str) -> str:
    try:
        from PIL import Image

        raw = base64.b64decode(url.split(",", 1)[1][:400_000] + "==", validate=False)
        with Image.open(io.BytesIO(raw)) as img:  # reads the header only
            return f"{img.width}x{img.height}"
    except Exception:  # noqa: BLE001 - a size we cannot read is shown as unknown, never fatal
        return "?x?"


def _image_attachments(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    found = []
    for m in messages:
        for att in m.get("attachments") or ():
            if isinstance(att, dict) and (att.get("kind") or att.get("type")) == "image":
                found.append(att)
    return found


def _strip_images(history: list[dict[str, Any]], messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    metas = iter(_image_attachments(messages))  # images appear in the same order in both lists
    out = []
    for msg in history:
        content = msg.get("content")
        if not isinstance(content, list):
            out.append(msg)
            continue
        parts = []
        for part in content:
            url = (part.get("image_url") or {}).get("url", "") if isinstance(part, dict) else ""
            if url.startswith("data:") and part.get("type") == "image_url":
                meta = next(metas, {})
                name = part.get("name") or meta.get("filename") or meta.get("name") or "image"
                size = (
                    f"{meta['width']}x{meta['height']}"
                    if meta.get("width") and meta.get("height")
                    else _image_size(url)
                )
                parts.append({"type": "text", "text": f"[image: {name} {size}, not stored]"})
            else:
                parts.append(part)
        out.append(msg | {"content": parts})
    return out


def _drop_big_data_urls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_big_data_urls(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_drop_big_data_urls(v) for v in value]
    if isinstance(value, str) and value.startswith("data:") and len(value) > 256:
        return "[data URL, not stored]"
    return value


def snapshot(session: Session) -> dict[str, Any]:
    """The JSON-ready state of a session, images replaced by placeholders, no conversation id."""
    return {
        "history": _strip_images(session.history, session.messages),
        "messages": _drop_big_data_urls(session.messages),
        "tool_calls": session.tool_calls,
        "routes": session.routes,
        "usage": session.usage,
        "ticket": session.ticket,
        "ticket_fields": session.ticket_fields,
        "ticket_error": session.ticket_error,
        "ticket_changes": session.ticket_changes,
        "forked_from": session.forked_from,
        "turn": session.turn,
    }


# Imports never carry a server path: the attachment's local_file is dropped after validation.
_NO_LOCAL_FILES = {"messages": {"__all__": {"attachments": {"__all__": {"local_file"}}}}}


def _imported(data: dict[str, Any]) -> Session:
    """A validated, normalised copy of an exported conversation; its memory rebuilt from what is visible."""
    snap = Snapshot.model_validate(data)
    fields = scrub(snap.model_dump(exclude_unset=True, exclude=_NO_LOCAL_FILES))
    fields["ticket"] = scrub(snap.ticket)
    fields["ticket_fields"] = snap.ticket_fields.model_dump(exclude_none=True)
    messages = fields.get("messages", [])
    return Session(
        conversation_id=new_conversation_id(),
        history=memory_from_messages(messages),
        messages=messages,
        tool_calls=fields.get("tool_calls", []),
        routes=fields.get("routes", []),
        usage=fields.get("usage", []),
        ticket=fields["ticket"],
        ticket_fields=fields["ticket_fields"],
        ticket_error=snap.ticket_error,
        ticket_changes=fields.get("ticket_changes", []),
        turn=max([snap.turn, *(m["turn"] for m in messages)]),
    )


# ---------------------------------------------------------------- the store


class History:
    """Conversations and ticket versions in SQLite; safe to share between Gradio worker threads."""

    def __init__(self, path: Path | str, *, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self._clock = clock
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # One connection guarded by a lock: Gradio calls handlers from several threads.
        self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=10)
        with self._lock, self._db:
            self._db.execute("PRAGMA journal_mode=WAL")
            # A turn saves several times; NORMAL skips the fsync per commit and stays crash-consistent in WAL.
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(_SCHEMA[0])
            cols = {row[1] for row in self._db.execute("PRAGMA table_info(conversations)")}
        if not {"id", "snapshot", "updated_at"} <= cols:
            self._db.close()
            raise SupportbotError(
                f"{self.path}: a 'conversations' table with another layout exists "
                f"(columns {sorted(cols)}); history.py owns that table"
            )
        with self._lock, self._db:
            for stmt in _SCHEMA[1:]:
                self._db.execute(stmt)

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._db.close()

    def save(self, session: Session) -> None:
        """Upsert the session's snapshot (and its ticket, when it changed); call after every event worth keeping."""
        now = self._clock()
        blob = json.dumps(snapshot(session), ensure_ascii=False, default=str)
        with self._lock, self._db:
            self._db.execute(
                "INSERT INTO conversations (id, created_at, updated_at, turns, snapshot) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT(id) DO UPDATE SET updated_at=excluded.updated_at, turns=excluded.turns, "
                "snapshot=excluded.snapshot",
                (session.conversation_id, now, now, session.turn, blob),
            )
        if session.ticket:
            self.record_ticket(session.conversation_id, session.ticket)

    def load(self, conversation_id: str) -> Session | None:
        """The saved session, or None when the id is unknown (or was purged); CatalogError if it does not fit."""
        with self._lock:
            row = self._db.execute("SELECT snapshot FROM conversations WHERE id = ?", (conversation_id,)).fetchone()
        if row is None:
            return None
        try:
            data = json.loads(row[0])
        except (ValueError, RecursionError):
            raise CatalogError("stored conversation", f"{conversation_id[:8]}…: not readable JSON") from None
        session = stored_session(data, conversation_id)
        session.loaded = True  # shown as stored; its next turn continues under a new id
        return session

    def record_ticket(self, conversation_id: str, ticket: dict[str, Any]) -> bool:
        """Append a ticket version when it differs from the last one; True when one was added."""
        blob = json.dumps(ticket, ensure_ascii=False, sort_keys=True, default=str)
        with self._lock, self._db:
            last = self._db.execute(
                "SELECT version, ticket FROM ticket_versions WHERE conversation_id = ? ORDER BY version DESC LIMIT 1",
                (conversation_id,),
            ).fetchone()
            if last and last[1] == blob:
                return False
            self._db.execute(
                "INSERT INTO ticket_versions (conversation_id, version, created_at, ticket) VALUES (?, ?, ?, ?)",
                (conversation_id, (last[0] + 1) if last else 1, self._clock(), blob),
            )
        return True

    def ticket_versions(self, conversation_id: str) -> list[dict[str, Any]]:
        """Every ticket version, oldest first: ``{"version", "saved_at", "ticket"}``."""
        with self._lock:
            rows = self._db.execute(
                "SELECT version, created_at, ticket FROM ticket_versions WHERE conversation_id = ? ORDER BY version",
                (conversation_id,),
            ).fetchall()
        return [{"version": v, "saved_at": ts, "ticket": json.loads(t)} for v, ts, t in rows]

    def purge_older_than(self, days: int, now: float | None = None) -> int:
        """Delete conversations (and their tickets) untouched for ``days``; returns how many went."""
        cutoff = (self._clock() if now is None else now) - days * 86_400
        with self._lock, self._db:
            ids = [r[0] for r in self._db.execute("SELECT id FROM conversations WHERE updated_at < ?", (cutoff,))]
            self._db.executemany("DELETE FROM ticket_versions WHERE conversation_id = ?", [(i,) for i in ids])
            self._db.executemany("DELETE FROM conversations WHERE id = ?", [(i,) for i in ids])
            # Versions whose conversation was never saved (or is already gone) expire by their own age.
            self._db.execute(
                "DELETE FROM ticket_versions WHERE created_at < ? "
                "AND conversation_id NOT IN (SELECT id FROM conversations)",
                (cutoff,),
            )
        return len(ids)

    # ------------------------------------------------------------ export / import

    def export_json(self, session: Session) -> str:
        """A portable JSON file: format marker, the conversation, its ticket versions; no id, no keys."""
        doc = {
            "format": FORMAT,
            "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            # forked_from is another conversation's id, a capability to open it: never exported.
            "conversation": {k: v for k, v in snapshot(session).items() if k != "forked_from"},
            "ticket_versions": [
                {"version": v["version"], "ticket": v["ticket"]} for v in self.ticket_versions(session.conversation_id)
            ],
        }
        return json.dumps(scrub(doc), ensure_ascii=False, indent=2, default=str)

    def import_json(self, text: str | bytes) -> Session:
        """Read an export back as a new session (fresh id); CatalogError("import", ...) says what is wrong."""
        return import_json(text)

    def export_markdown(self, session: Session) -> str:
        """A readable transcript (see :func:`export_markdown`)."""
        return export_markdown(session)


def import_json(text: str | bytes) -> Session:
    """Validate an exported conversation and return it as a new session with a fresh id."""
    if len(text) > MAX_IMPORT_BYTES:
        raise CatalogError("import", f"file is larger than {MAX_IMPORT_BYTES // (1024 * 1024)} MB")
    try:
        doc = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CatalogError("import", f"not a JSON file ({exc})") from None
    except RecursionError:
        raise CatalogError("import", "the JSON is nested too deeply") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        found = repr(doc.get("format")) if isinstance(doc, dict) else type(doc).__name__
        found = found if len(found) <= 60 else found[:59] + "…"
        raise CatalogError(
            "import", f"not a supportbot conversation export (expected format {FORMAT!r}, found {found})"
        )
    conv = doc.get("conversation")
    if not isinstance(conv, dict):
        raise CatalogError("import", "missing the 'conversation' object")
    try:
        return _imported(conv)
    except ValidationError as exc:
        raise CatalogError("import", f"conversation.{first_error(exc)}") from None
