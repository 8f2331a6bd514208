"""What the model remembers of a conversation, and how it is kept small.

``Session.history`` is the model's memory (OpenAI messages, no system prompt). One rule,
here, says what a turn adds to it, whatever its ending:

* answered: the user message, every tool round, the answer;
* failed or stopped: the user message and the tool rounds that completed (their refunds
  and escalations happened, so the model must know), then a short note saying the answer
  failed or was stopped; with no completed round, nothing at all.

Images never stay in memory as pixels (a later text-only model must not receive them), and
old turns can be compacted into a visible, deterministic summary.

A log is sent once. Memory keeps each user message as it was sent, logs and all, but a request
carries ``sent_history``: every log in an earlier message is replaced by a short analysis of it
(levels, the most frequent errors, the first and last error). A "thanks" after a 300K-token log
costs what a "thanks" costs. When the customer attaches the log again, or asks about it
(``logs_asked_about``: a log word or the file's name), it goes with that turn as an attachment,
routed and reduced like any other.
"""

from __future__ import annotations

from typing import Any, Literal

from supportbot.attachments.analysis import analyse, render_analysis
from supportbot.attachments.images import PreparedImage
from supportbot.routing import tokens
from supportbot.routing.catalog import ModelInfo
from supportbot.session import Session
from supportbot.vocabulary import SCAN_CHARS, fence_log, find_fenced_logs, replace_fenced_logs, words_of

KEEP_RECENT_MESSAGES = 6
# A message asks about an earlier log when it uses one of these words, or names the file.
LOG_WORDS = ("log", "logs", "logfile", "logfiles", "trace", "traceback", "stacktrace", "stack trace")
Ending = Literal["answered", "failed", "stopped"]
# What the model is told happened to a turn that did not end in an answer but whose tool rounds are kept.
NOTES: dict[str, str] = {
    "stopped": "(The customer stopped this answer before it finished.)",
    "failed": "(The previous answer failed; see the error shown to the customer.)",
}


def remember(
    history: list[dict[str, Any]],
    user_msg: dict[str, Any],
    images: list[PreparedImage],
    ending: Ending,
    added: list[dict[str, Any]],
) -> list[dict[str, Any]] | None:
    """The model's memory after a turn, or None when the turn leaves it as it was.

    ``added`` is what the agent produced: every message for an answered turn, the
    completed tool rounds otherwise.
    """
    if ending == "answered":
        return [*history, storable(user_msg, images), *added]
    if not added:
        return None
    return [*history, storable(user_msg, images), *added, {"role": "assistant", "content": NOTES[ending]}]


def storable(user_msg: dict[str, Any], images: list[PreparedImage]) -> dict[str, Any]:
    """The user message as kept for later turns: images become a text note, so a later
    text-only model never receives an image part (and the history stays small)."""
    if not images:
        return user_msg
    text = user_msg["content"][0]["text"]
    notes = [
        f"[screenshot {im.filename}, {im.source_width}x{im.source_height}: already shown to a vision model]"
        for im in images
    ]
    return {"role": "user", "content": "\n".join([text, *notes])}


def chat_messages(session: Session) -> list[dict[str, Any]]:
    """The customer's and agent's messages only (no notices), for tickets and summaries."""
    return [m for m in session.messages if m["role"] in ("user", "assistant") and isinstance(m.get("content"), str)]


def transcript(session: Session, limit: int = 1500) -> str:
    """The last few messages as plain text, for a hand-off to a human."""
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
    return [
        {"role": "user", "content": summary},
        {"role": "assistant", "content": "Noted; continuing from that summary."},
        *recent,
    ], summary


def sent_history(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The memory as a request carries it: each log fenced in a user message is replaced by its analysis."""
    return [_without_logs(m) if m.get("role") == "user" else m for m in history]


def _without_logs(message: dict[str, Any]) -> dict[str, Any]:
    content = message.get("content")
    if not isinstance(content, str):
        return message
    return {**message, "content": replace_fenced_logs(content, _stand_in)}


def _stand_in(name: str, body: str) -> str:
    """What later turns carry instead of a log: a note and the analysis, still fenced as the customer's data."""
    analysis = render_analysis(analyse(body.split("\n")))
    note = f'[The log "{name}" was sent in full with this message and is not repeated; its analysis:]'
    return note + "\n" + fence_log(analysis, f"{name} (analysis)")


def earlier_logs(history: list[dict[str, Any]]) -> dict[str, str]:
    """{filename: log text} of the logs fenced in earlier user messages (the latest copy of each)."""
    found: dict[str, str] = {}
    for m in history:
        content = m.get("content")
        if m.get("role") == "user" and isinstance(content, str):
            for name, body in find_fenced_logs(content):
                found.pop(name, None)  # re-insert: the most recent copy comes last
                found[name] = body
    return found


def logs_asked_about(history: list[dict[str, Any]], text: str) -> dict[str, str]:
    """The earlier logs ``text`` asks about: those it names, else the latest one when it uses a log word."""
    logs = earlier_logs(history)
    if not logs or not text:
        return {}
    lowered = text[:SCAN_CHARS].lower()
    named = {name: body for name, body in logs.items() if _stem(name) and _stem(name) in lowered}
    if named:
        return named
    if any(words_of(text).has(w) for w in LOG_WORDS):
        name = next(reversed(logs))
        return {name: logs[name]}
    return {}


def _stem(filename: str) -> str:
    """ "checkout-service.log.gz" -> "checkout-service": how a customer names a file."""
    stem = filename.lower()
    for suffix in (".gz", ".log", ".txt"):
        stem = stem.removesuffix(suffix)
    return stem if len(stem) >= 4 else ""  # "a.log" -> "a" would match almost any message
