"""Conversation persistence: every turn is written to the database as it happens.

The caller saves after each event worth keeping (user message, tool call, answer),
so a crash or a reload loses nothing already shown, and any replica on the same database
(PostgreSQL) can load what another saved. We touch only our two tables, ``conversations``
and ``ticket_versions`` (created by ``storage.migrations``). Screenshots are not stored:
their data URLs in the model history become a short text placeholder; the transcript
keeps their metadata.

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
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from supportbot.errors import CatalogError
from supportbot.session import Session, new_conversation_id
from supportbot.storage.db import Database, sqlite_at
from supportbot.storage.migrations import ensure_schema
from supportbot.storage.schema import Snapshot, first_error, memory_from_messages, stored_session
from supportbot.storage.transcript import export_markdown, scrub

FORMAT = "supportbot.conversation/1"
MAX_IMPORT_BYTES = 20 * 1024 * 1024


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
        "pending_call": session.pending_call,
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
    """Conversations and ticket versions in the database; safe to share between Gradio worker threads."""

    def __init__(self, db: Database | Path | str, *, clock: Callable[[], float] = time.time) -> None:
        # A path opens (and owns) a SQLite file there; a Database is shared, and closed by its opener.
        self._owns_db = not isinstance(db, Database)
        self.db = sqlite_at(db) if self._owns_db else db
        self.path = getattr(self.db, "path", None)  # the SQLite file, when there is one
        self._clock = clock
        try:
            ensure_schema(self.db)
        except BaseException:
            if self._owns_db:
                self.db.close()
            raise

    def close(self) -> None:
        """Close the database when this history opened it."""
        if self._owns_db:
            self.db.close()

    def save(self, session: Session) -> None:
        """Upsert the session's snapshot (and its ticket, when it changed); call after every event worth keeping."""
        now = self._clock()
        blob = json.dumps(snapshot(session), ensure_ascii=False, default=str)
        self.db.execute(
            "INSERT INTO conversations (id, created_at, updated_at, turns, snapshot) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET updated_at = excluded.updated_at, turns = excluded.turns, "
            "snapshot = excluded.snapshot",
            (session.conversation_id, now, now, session.turn, blob),
        )
        if session.ticket:
            self.record_ticket(session.conversation_id, session.ticket)

    def load(self, conversation_id: str) -> Session | None:
        """The saved session, or None when the id is unknown (or was purged); CatalogError if it does not fit."""
        rows = self.db.execute("SELECT snapshot FROM conversations WHERE id = ?", (conversation_id,))
        if not rows:
            return None
        try:
            data = json.loads(rows[0]["snapshot"])
        except (ValueError, RecursionError):
            raise CatalogError("stored conversation", f"{conversation_id[:8]}…: not readable JSON") from None
        session = stored_session(data, conversation_id)
        session.loaded = True  # shown as stored; its next turn continues under a new id
        return session

    def record_ticket(self, conversation_id: str, ticket: dict[str, Any]) -> bool:
        """Append a ticket version when it differs from the last one; True when one was added."""
        blob = json.dumps(ticket, ensure_ascii=False, sort_keys=True, default=str)
        with self.db.transaction() as conn:
            # Two replicas saving one conversation at once must not both take the next version number.
            self.db.lock(conn, f"supportbot.ticket:{conversation_id}")
            last = conn.execute(
                "SELECT version, ticket FROM ticket_versions WHERE conversation_id = ? ORDER BY version DESC LIMIT 1",
                (conversation_id,),
            ).fetchone()
            if last and last["ticket"] == blob:
                return False
            conn.execute(
                "INSERT INTO ticket_versions (conversation_id, version, created_at, ticket) VALUES (?, ?, ?, ?)",
                (conversation_id, (last["version"] + 1) if last else 1, self._clock(), blob),
            )
        return True

    def ticket_versions(self, conversation_id: str) -> list[dict[str, Any]]:
        """Every ticket version, oldest first: ``{"version", "saved_at", "ticket"}``."""
        rows = self.db.execute(
            "SELECT version, created_at, ticket FROM ticket_versions WHERE conversation_id = ? ORDER BY version",
            (conversation_id,),
        )
        return [{"version": r["version"], "saved_at": r["created_at"], "ticket": json.loads(r["ticket"])} for r in rows]

    def purge_older_than(self, days: int, now: float | None = None) -> int:
        """Delete conversations (and their tickets) untouched for ``days``; returns how many went."""
        cutoff = (self._clock() if now is None else now) - days * 86_400
        with self.db.transaction() as conn:
            # Counted by what this transaction deleted: a replica purging at the same moment deletes the rest.
            gone = conn.execute("DELETE FROM conversations WHERE updated_at < ?", (cutoff,)).rowcount
            # Their versions (saved with them, so as old), and versions whose conversation was never saved.
            conn.execute(
                "DELETE FROM ticket_versions WHERE created_at < ? "
                "AND conversation_id NOT IN (SELECT id FROM conversations)",
                (cutoff,),
            )
        return gone

    # ------------------------------------------------------------ export / import

    def export_json(self, session: Session) -> str:
        """A portable JSON file: format marker, the conversation, its ticket versions; no id, no keys."""
        doc = {
            "format": FORMAT,
            "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            # forked_from is another conversation's id, a capability to open it; a pending call is one click
            # from a refund and carries the model's messages: neither is exported.
            "conversation": {k: v for k, v in snapshot(session).items() if k not in ("forked_from", "pending_call")},
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
