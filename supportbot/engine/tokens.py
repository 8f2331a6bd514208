"""The engine's own token count: a pre-tokenizer split in the style of GPT-4's, then subwords.

Deliberately independent of the product's estimator (``supportbot.routing.tokens`` counts
characters per kind of text): the engine judges context overflow with this count, so a test
that a prompt "fits" checks the product's estimate against something it did not write.

A piece is a word with its leading space, up to three digits, a run of punctuation, or a
line break. A word of up to 8 letters is one token; longer words add one token per 4
letters, the way BPE vocabularies split rare words. Every repeat is bounded: linear time.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

_PIECE = re.compile(r"'(?:[sdmt]|ll|ve|re)| ?[^\W\d_]{1,64}| ?\d{1,3}| ?[^\s\w]{1,4}|\s{0,8}\n|\s{1,8}(?!\S)")
PER_MESSAGE = 4  # role markers and separators of a chat template
PER_IMAGE = 1024


# Long texts are split in slices this long, at a word start where one is near, so no single
# regex call holds the GIL for long: the engine runs in a worker thread beside the event loop.
SLICE_CHARS = 32_768


def count_tokens(text: str) -> int:
    """Tokens in ``text`` by the engine's own split."""
    total = 0
    start = 0
    while start < len(text):
        end = _slice_end(text, start)
        for piece in _PIECE.findall(text, start, end):
            letters = len(piece) - piece.startswith(" ")
            if letters > 8 and piece[-1].isalpha():
                total += 1 + (letters - 8 + 3) // 4
            else:
                total += 1
        start = end
    return total


def _slice_end(text: str, start: int) -> int:
    """Where a slice from ``start`` ends: before a space that follows a letter, which no piece
    spans (a word ends there and the next piece starts with the space); else a hard cut."""
    end = start + SLICE_CHARS
    if end >= len(text):
        return len(text)
    at = text.rfind(" ", end - 1024, end)
    while at > start and not text[at - 1].isalpha():
        at = text.rfind(" ", end - 1024, at)
    return at if at > start else end


def count_content(content: Any) -> int:
    """Tokens of a message's content: a string, or text and image parts."""
    if isinstance(content, str):
        return count_tokens(content)
    total = 0
    for part in content or ():
        if isinstance(part, dict) and part.get("type") == "text":
            total += count_tokens(str(part.get("text", "")))
        elif isinstance(part, dict) and part.get("type") == "image_url":
            total += PER_IMAGE
    return total


def count_messages(messages: Iterable[Mapping[str, Any]]) -> int:
    """Tokens of a whole prompt: contents, tool calls and the template's overhead."""
    total = 3
    for message in messages:
        total += PER_MESSAGE + count_content(message.get("content"))
        for call in message.get("tool_calls") or ():
            fn = call.get("function") or {}
            total += count_tokens(str(fn.get("name", ""))) + count_tokens(str(fn.get("arguments", "")))
    return total


def count_tools(tools: Iterable[Mapping[str, Any]] | None) -> int:
    """Tokens the tool schemas add to a request."""
    return sum(count_tokens(json.dumps(tool)) for tool in tools or ())
