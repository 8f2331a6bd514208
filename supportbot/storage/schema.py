"""The conversation schema: what an import must match, and what a stored conversation is checked against.

Nothing a visitor supplies is trusted as structure. An imported file is validated field by field:
roles from a fixed set, text as strings only, attachments as plain metadata, tool calls, routes,
usage and the ticket typed and bounded. Anything else is refused with a message that names the
field (``conversation.messages[3].content: Input should be a valid string``); keys the schema does
not know are dropped, never kept. Types are strict: ``"1"`` is not a number and ``{"path": ...}`` is
not text, so nothing reaches a Gradio component as a file or a component.

A stored row is checked against the same types on load (``context={"stored": True}``), without the
import's size bounds and file-reference rule: those rows are ours, and a long conversation or a
model's odd tool arguments must not make a share link unreadable (the UI defuses such JSON itself).

The model's memory of an imported conversation is rebuilt from its visible messages
(:func:`memory_from_messages`); the file's own ``history`` is never read, so no system message,
forged tool result or remote image reaches the model.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, model_validator

from supportbot.errors import CatalogError
from supportbot.session import Session
from supportbot.ticket.record import Ticket
from supportbot.vocabulary import Category, Priority, Sentiment

MAX_MESSAGES = 2_000
MAX_RECORDS = 5_000  # tool calls, routes and usage records, each
MAX_TEXT_CHARS = 1_000_000  # one message, or one string inside a tool's arguments or result
MAX_JSON_DEPTH = 8
MAX_TURN = 100_000


def _stored(info: ValidationInfo) -> bool:
    return bool(info.context and info.context.get("stored"))


def _at_most(limit: int, unit: str) -> AfterValidator:
    """A size bound for imports (stored rows are ours and exempt)."""

    def check(value: Any, info: ValidationInfo) -> Any:
        if len(value) > limit and not _stored(info):
            raise ValueError(f"too long for an import: {len(value):,} {unit}, at most {limit:,}")
        return value

    return AfterValidator(check)


Name = Annotated[str, _at_most(200, "characters")]  # models, tool names, call ids, filenames, kinds
Line = Annotated[str, _at_most(10_000, "characters")]  # reasons, errors, notes
Text = Annotated[str, _at_most(MAX_TEXT_CHARS, "characters")]
Count = Annotated[int, Field(ge=0, le=10**12)]
Turn = Annotated[int, Field(ge=0, le=MAX_TURN)]
Millis = Annotated[float, Field(ge=0, le=10**9)]


def _plain_json_field(value: Any, info: ValidationInfo) -> Any:
    return value if _stored(info) else _plain_json(value)


def _plain_json(value: Any) -> Any:
    """Bounded JSON data with no object Gradio would take for a file (a ``path`` key); iterative, linear."""
    stack: list[tuple[Any, str, int]] = [(value, "", 0)]
    while stack:
        item, where, depth = stack.pop()
        at = f"at {where}" if where else "at the top"
        if isinstance(item, dict | list) and depth >= MAX_JSON_DEPTH:
            raise ValueError(f"nested deeper than {MAX_JSON_DEPTH} levels {at}")
        if isinstance(item, dict):
            if "path" in item:
                raise ValueError(f"an object with a 'path' key {at}: file references are not accepted")
            stack.extend((v, f"{where}.{_key(k)}", depth + 1) for k, v in item.items())
        elif isinstance(item, list):
            stack.extend((v, f"{where}[{i}]", depth + 1) for i, v in enumerate(item))
        elif isinstance(item, str):
            if len(item) > MAX_TEXT_CHARS:
                raise ValueError(f"a string longer than {MAX_TEXT_CHARS:,} characters {at}")
        elif not (item is None or isinstance(item, bool | int | float)):
            raise ValueError(f"not JSON data {at}")
    return value


PlainJson = Annotated[Any, AfterValidator(_plain_json_field)]


class _Record(BaseModel):
    # Unknown keys are dropped (a newer export may add some); known ones must have exactly their type.
    model_config = ConfigDict(extra="ignore", strict=True)


class Attachment(_Record):
    """What a message says about a file it carried: plain metadata, never the file."""

    kind: Literal["image", "log"]
    filename: Name
    format: Name | None = None
    width: Count | None = None
    height: Count | None = None
    sent_width: Count | None = None
    sent_height: Count | None = None
    payload_bytes: Count | None = None
    bytes: Count | None = None
    lines: Count | None = None
    est_tokens: Count | None = None
    sent_tokens: Count | None = None
    reduced: bool = False
    header: Line = ""
    # Where this server keeps an upload; only ever kept from our own stored snapshots, never imported.
    local_file: Annotated[str, Field(max_length=4096)] | None = None

    @model_validator(mode="after")
    def _described(self) -> Attachment:
        needs = ("width", "height") if self.kind == "image" else ("lines", "est_tokens")
        missing = [n for n in needs if getattr(self, n) is None]
        if missing:
            article = "an" if self.kind == "image" else "a"
            raise ValueError(f"{article} {self.kind} attachment needs {' and '.join(missing)}")
        return self


class Message(_Record):
    """One visible message: the customer's, the agent's answer, or a notice."""

    role: Literal["user", "assistant", "notice"]
    content: Text
    turn: Turn
    attachments: Annotated[list[Attachment], _at_most(64, "attachments")] = Field(default_factory=list)
    model: Name | None = None
    stopped: bool = False
    error: Line | None = None
    error_kind: Name | None = None


class ToolCall(_Record):
    """A finished tool call as the Tools panel shows it."""

    turn: Turn
    call_id: Name
    name: Name
    arguments: PlainJson
    ok: bool
    result: PlainJson = None
    error: Line | None = None
    duration_ms: Millis


class Route(_Record):
    """Which model a turn went to, and why."""

    turn: Turn
    model: Name
    category: Name
    reason: Line
    est_tokens: Count
    context_window: Count
    fallbacks: Annotated[list[Name], _at_most(50, "models")] = Field(default_factory=list)
    switched_from: Name | None = None
    reduce_logs_to: Count | None = None
    rule: Name = ""
    fallback_from: Name | None = None  # the model that failed the turn before ``model`` answered it


class Usage(_Record):
    """One request to the model service."""

    turn: Turn
    model: Name
    purpose: Name = "answer"
    prompt_tokens: Count
    completion_tokens: Count
    estimated: bool = False
    latency_ms: Millis
    ttft_ms: Millis | None = None
    total_tokens: Count | None = None


class QueuedCall(_Record):
    """A call of a paused round that has not run yet."""

    id: str
    name: str
    arguments: str


class PendingCall(_Record):
    """A call awaiting a human's approval, and what resuming its turn needs (``supportbot.approval``)."""

    call_id: str
    name: str
    arguments: str
    turn: Turn
    model: str
    steps: Annotated[int, Field(ge=1)]
    text: str = ""
    queued: list[QueuedCall] = Field(default_factory=list)
    messages: Annotated[list[dict[str, Any]], Field(min_length=2)]

    @model_validator(mode="after")
    def _resumable(self) -> PendingCall:
        if self.messages[0].get("role") != "user":
            raise ValueError("the turn's messages must start with the customer's")
        if not any(m.get("role") == "assistant" and m.get("tool_calls") for m in self.messages):
            raise ValueError("the turn's messages must hold the paused round's tool calls")
        return self


def _stored_only(value: Any, info: ValidationInfo) -> Any:
    # A pending call is a refund or an escalation one click from running: only our own stored rows
    # may carry one, never a file a visitor imports.
    if value is not None and not _stored(info):
        raise ValueError("an imported conversation cannot carry a call awaiting approval")
    return value


class TicketFields(_Record):
    """What the ``update_ticket`` tool recorded."""

    category: Category | None = None
    intent_summary: Annotated[str, Field(max_length=300)] | None = None
    sentiment: Sentiment | None = None
    frustration: Annotated[int, Field(ge=0, le=3)] | None = None
    priority: Priority | None = None
    language: Annotated[str, Field(max_length=35)] | None = None
    next_steps: list[Annotated[str, Field(max_length=300)]] | None = Field(None, max_length=10)


class TicketChange(_Record):
    """One field a turn changed in the ticket: a value's before and after, or a list's added and removed items."""

    field: Name
    before: PlainJson = None
    after: PlainJson = None
    added: Annotated[list[PlainJson], _at_most(200, "items")] | None = None
    removed: Annotated[list[PlainJson], _at_most(200, "items")] | None = None


class TicketTurn(_Record):
    """What one turn changed in the ticket."""

    turn: Turn
    changes: Annotated[list[TicketChange], _at_most(50, "changes")] = Field(default_factory=list)


def _ticket(value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
    """Empty (no ticket yet) or a complete :class:`Ticket`, normalised."""
    if not value:
        return {}
    _plain_json_field(value, info)
    try:
        return Ticket.model_validate(value).model_dump(mode="json")
    except ValidationError as exc:  # re-raised as a plain error: pydantic nests it under "ticket"
        raise ValueError(first_error(exc)) from None


class Snapshot(BaseModel):
    """A conversation as exported (and as stored, plus the model's memory, ``forked_from`` and ``pending_call``)."""

    model_config = ConfigDict(extra="ignore", strict=True)
    messages: Annotated[list[Message], _at_most(MAX_MESSAGES, "messages")] = Field(default_factory=list)
    tool_calls: Annotated[list[ToolCall], _at_most(MAX_RECORDS, "tool calls")] = Field(default_factory=list)
    routes: Annotated[list[Route], _at_most(MAX_RECORDS, "routes")] = Field(default_factory=list)
    usage: Annotated[list[Usage], _at_most(MAX_RECORDS, "usage records")] = Field(default_factory=list)
    ticket: Annotated[dict[str, Any], AfterValidator(_ticket)] = Field(default_factory=dict)
    ticket_fields: TicketFields = Field(default_factory=TicketFields)
    ticket_error: Line | None = None
    ticket_changes: Annotated[list[TicketTurn], _at_most(MAX_RECORDS, "ticket changes")] = Field(default_factory=list)
    turn: Turn = 0
    pending_call: Annotated[PendingCall | None, AfterValidator(_stored_only)] = None


def where(loc: tuple[int | str, ...]) -> str:
    """A pydantic error location as a path a person reads: ``messages[3].content``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{_key(part)}"
    return out.lstrip(".")


def first_error(exc: ValidationError) -> str:
    """The first problem, as ``path: message``, with no echo of the offending value."""
    err = exc.errors(include_url=False, include_input=False)[0]
    msg = str(err["ctx"]["error"]) if err["type"] == "value_error" and "ctx" in err else err["msg"]
    path = where(tuple(err["loc"]))
    return f"{path}: {msg}" if path else msg


def _key(key: Any) -> str:
    """A visitor's key, cut short and printable, for an error message."""
    text = str(key)
    text = text if len(text) <= 40 else text[:39] + "…"
    return "".join(c if c.isprintable() else "?" for c in text)


def stored_session(data: Any, conversation_id: str) -> Session:
    """A stored snapshot (written by :meth:`History.save`) back as a session, checked against the schema.

    The stored dicts are kept as they are once they pass (they are ours: a turn's own records, or an
    import that was validated and normalised before it was saved); a row that does not fit is refused.
    """
    if not isinstance(data, dict):
        raise CatalogError("stored conversation", f"{conversation_id[:8]}…: not a JSON object")
    try:
        Snapshot.model_validate(data, context={"stored": True})
    except ValidationError as exc:
        raise CatalogError("stored conversation", f"{conversation_id[:8]}…: {first_error(exc)}") from None
    history = data.get("history")
    forked = data.get("forked_from")
    return Session(
        conversation_id=conversation_id,
        history=history if isinstance(history, list) else [],
        messages=data.get("messages", []),
        tool_calls=data.get("tool_calls", []),
        routes=data.get("routes", []),
        usage=data.get("usage", []),
        ticket=data.get("ticket", {}),
        ticket_fields=data.get("ticket_fields", {}),
        ticket_error=data.get("ticket_error"),
        ticket_changes=data.get("ticket_changes", []),
        forked_from=forked if isinstance(forked, str) else None,
        turn=data.get("turn", 0),
        pending_call=data.get("pending_call"),
    )


def memory_from_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The model's memory rebuilt from visible user and assistant messages: text only, no tool rounds."""
    out = []
    for m in messages:
        if m["role"] == "user":
            notes = [_attachment_note(a) for a in m.get("attachments") or ()]
            text = "\n".join([t for t in [m["content"], *notes] if t]) or "(empty message)"
            out.append({"role": "user", "content": text})
        elif m["role"] == "assistant" and m["content"]:
            out.append({"role": "assistant", "content": m["content"]})
    return out


def _attachment_note(att: dict[str, Any]) -> str:
    if att["kind"] == "image":
        return f"[screenshot {att['filename']}, {att['width']}x{att['height']}: not available in this copy]"
    return f"[log {att['filename']}, {att['lines']:,} lines: not available in this copy]"
