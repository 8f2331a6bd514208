"""Offline token estimates, calibrated by kind of text.

No tokenizer is downloaded: we count characters and classify the text. BPE
tokenizers of the catalog's models give about 4 characters per token on English
prose and about 2 on machine logs (timestamps, hex ids, paths and punctuation
split into many short tokens). Mixed text is classified by its share of
"log-like" characters so a pasted log inside a message is not under-counted.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from supportbot.vocabulary import CHARS_PER_TOKEN

TextKind = Literal["prose", "log", "code", "auto"]

# Chat templates wrap each message in role markers and separators.
MESSAGE_OVERHEAD = 4
# A downscaled screenshot costs about this much for the vision models we route to
# (Kimi VL tiles at ~1.8k tokens for 1792px; Gemma 3 uses a fixed 256-token window).
IMAGE_TOKENS = 1600
# Estimates are deliberately rounded up by this margin before comparing to a window.
SAFETY_MARGIN = 0.10

# Possessive repeats (``*+``, ``++``) never give back: with a plain ``\s*`` followed by a
# ``\s+at`` branch, a line of 20,000 spaces was tried every way it splits (quadratic, ~1 s).
_LOG_LINE = re.compile(
    r"^\s*+(\[?\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}|\w{3}\s+\d+\s\d{2}:\d{2}:\d{2}|\d{1,3}(\.\d{1,3}){3}\s|"
    r"\[\w{3} \w{3}|\{\"|(?<=\s)at [\w.$]++\(|(ERROR|WARN|WARNING|INFO|DEBUG|TRACE|FATAL)\b)"
)
_DENSE = re.compile(r"[0-9:/\\._\-\[\]{}=\"]")


def classify(text: str) -> str:
    """Guess whether ``text`` is prose, code or log from a sample of its lines."""
    sample = text[:20_000]
    lines = [ln for ln in sample.splitlines() if ln.strip()]
    if not lines:
        return "prose"
    loggy = sum(1 for ln in lines if _LOG_LINE.match(ln))
    if loggy / len(lines) >= 0.3:
        return "log"
    dense = len(_DENSE.findall(sample)) / max(len(sample), 1)
    if dense > 0.18:
        return "log"
    if dense > 0.10 or sample.count("{") + sample.count(";") > len(lines):
        return "code"
    return "prose"


def estimate_tokens(text: str, kind: TextKind = "auto") -> int:
    """Estimate the tokens in ``text`` (no margin applied)."""
    if not text:
        return 0
    k = classify(text) if kind == "auto" else kind
    return int(len(text) / CHARS_PER_TOKEN[k]) + 1


def estimate_chars(n_chars: int, kind: str) -> int:
    """Estimate tokens for ``n_chars`` characters of a known kind (for streamed files)."""
    return int(n_chars / CHARS_PER_TOKEN[kind]) + 1 if n_chars else 0


def _content_tokens(content: Any) -> int:
    if content is None:
        return 0
    if isinstance(content, str):
        return estimate_tokens(content)
    total = 0
    for part in content:  # OpenAI content parts
        if part.get("type") == "text":
            total += estimate_tokens(part.get("text", ""))
        elif part.get("type") == "image_url":
            total += IMAGE_TOKENS
    return total


def estimate_message(message: Mapping[str, Any]) -> int:
    """Estimate one chat message, its tool calls and the per-message overhead."""
    total = MESSAGE_OVERHEAD + _content_tokens(message.get("content"))
    for call in message.get("tool_calls") or ():
        fn = call.get("function", {})
        total += estimate_tokens(fn.get("name", ""), "code") + estimate_tokens(fn.get("arguments", ""), "code")
    return total


def estimate_messages(messages: Iterable[Mapping[str, Any]]) -> int:
    """Estimate a whole prompt (no margin applied)."""
    return sum(estimate_message(m) for m in messages) + 3  # reply priming


def estimate_tools(tools: Iterable[Mapping[str, Any]] | None) -> int:
    """Estimate the tokens the tool schemas add to a request."""
    import json

    return sum(estimate_tokens(json.dumps(t), "code") for t in tools or ())


def with_margin(tokens: int, margin: float = SAFETY_MARGIN) -> int:
    """Round an estimate up by the safety margin."""
    return int(tokens * (1 + margin)) + 1
