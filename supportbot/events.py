"""The typed events the agent yields; the only thing the UI and the agent share.

Data flows one way: the agent produces these, the UI renders them, the session
records them. Everything is a frozen dataclass of plain, JSON-friendly values.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Purpose = Literal["answer", "tool_round", "ticket_extraction", "ticket_repair", "retry"]


@dataclass(frozen=True)
class Skipped:
    """A model automatic routing passed over, and why ("not on your plan", "not listed by the service", ...)."""

    model: str
    reason: str


@dataclass(frozen=True)
class RouteDecision:
    """Which model a turn goes to, and why, in words a person understands."""

    model: str
    category: str
    reason: str
    fallbacks: tuple[str, ...] = ()
    switched_from: str | None = None  # the manual choice that could not take this turn
    est_tokens: int = 0  # estimated prompt incl. attachments, tools, output budget and margin
    context_window: int = 0
    reduce_logs_to: int | None = None  # token budget for attached logs when they must be reduced
    rule: str = ""  # machine-readable rule name, e.g. "vision", "long_context", "manual"
    # Added fields (the ones above are a public promise in /session ``routes``):
    skipped: tuple[Skipped, ...] = ()  # candidates passed over, in preference order
    warning: str | None = None  # a manual choice the plan or the service may refuse
    fallback_from: str | None = None  # the model that failed this turn before ``model`` answered it

    def to_json(self) -> dict[str, Any]:
        """A plain dict for /session and persistence (lists, as JSON has no tuples)."""
        return asdict(self) | {"fallbacks": list(self.fallbacks), "skipped": [asdict(s) for s in self.skipped]}


@dataclass(frozen=True)
class UsageRecord:
    """One request to the model service."""

    model: str
    purpose: Purpose
    prompt_tokens: int
    completion_tokens: int
    estimated: bool  # True when the server sent no usage and we estimated it
    latency_ms: float
    ttft_ms: float | None = None
    turn: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def to_json(self) -> dict[str, Any]:
        """A plain dict for /session and persistence."""
        return asdict(self) | {"total_tokens": self.total_tokens}


@dataclass(frozen=True)
class RouteChosen:
    decision: RouteDecision


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class ToolCallStarted:
    call_id: str
    name: str
    arguments: str  # raw JSON as the model produced it


@dataclass(frozen=True)
class ToolCallFinished:
    call_id: str
    name: str
    arguments: dict[str, Any] | str
    ok: bool
    result: Any
    error: str | None
    duration_ms: float

    def to_json(self) -> dict[str, Any]:
        """A plain dict for /session and persistence."""
        return asdict(self)


@dataclass(frozen=True)
class RoundCompleted:
    """A tool round is complete: the assistant's calls and every result, safe to keep in history."""

    messages: list[dict[str, Any]]


@dataclass(frozen=True)
class UsageReported:
    record: UsageRecord


@dataclass(frozen=True)
class TicketUpdated:
    ticket: dict[str, Any]
    error: str | None = None  # extraction failed; the panel shows this, the chat goes on


@dataclass(frozen=True)
class Notice:
    """Something the user should know that is not an error (e.g. a log was reduced)."""

    text: str


@dataclass(frozen=True)
class FallbackStarted:
    """The turn's model failed before any answer text: it runs again on ``model`` (at most once a turn)."""

    failed: str  # model id
    model: str
    kind: str  # the failure's ApiError kind
    status: int | None
    message: str  # what the chat shows


@dataclass(frozen=True)
class ApprovalRequested:
    """The agent paused before a call a human must approve (SUPPORTBOT_CONFIRM_TOOLS); the turn's event ends here."""

    call_id: str
    name: str
    arguments: str  # raw JSON as the model produced it
    queued: list[dict[str, str]]  # the round's later calls, not run yet: {"id", "name", "arguments"}
    partial: list[dict[str, Any]]  # the round so far: the assistant's tool calls, then the results already in
    steps: int  # tool rounds begun in the turn, this one included


@dataclass(frozen=True)
class ErrorEvent:
    kind: str  # ApiError.kind, or "step_limit", "internal"
    message: str
    status: int | None = None


@dataclass(frozen=True)
class Done:
    """The turn ended. ``messages`` are the assistant/tool messages to append to history."""

    text: str
    messages: list[dict[str, Any]] = field(default_factory=list)
    finish_reason: str | None = None
    ok: bool = True


Event = (
    RouteChosen
    | TextDelta
    | ToolCallStarted
    | ToolCallFinished
    | RoundCompleted
    | UsageReported
    | TicketUpdated
    | Notice
    | FallbackStarted
    | ApprovalRequested
    | ErrorEvent
    | Done
)
