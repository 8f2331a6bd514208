"""Chat-completion responses on the wire: the JSON body, the SSE stream and the model list.

Pure: what the engine decided to say (text, tool calls, finish reason, usage) in, the bytes
OpenAI's API would send out, with its delta shape and deterministic ids.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

OWNER = "offline demo engine"


@dataclass(frozen=True)
class ToolCall:
    """A function call the engine decided to make."""

    name: str
    arguments: dict[str, Any]


def completion_id(body: Mapping[str, Any]) -> str:
    """A deterministic id derived from the request."""
    digest = hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()
    return f"chatcmpl-offline-{digest[:20]}"


def call_id(base: str, index: int) -> str:
    """A deterministic tool-call id, unique per request and position."""
    return "call_" + hashlib.sha256(f"{base}:{index}".encode()).hexdigest()[:24]


def usage_block(prompt: int, completion: int) -> dict[str, int]:
    """The OpenAI usage object."""
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def completion_body(
    cid: str, model: str, content: str | None, calls: Sequence[ToolCall], finish: str, usage: dict[str, int] | None
) -> dict[str, Any]:
    """A non-streaming chat.completion object."""
    message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
    if calls:
        message["tool_calls"] = [
            {
                "id": call_id(cid, i),
                "type": "function",
                "function": {"name": c.name, "arguments": json.dumps(c.arguments, ensure_ascii=False)},
            }
            for i, c in enumerate(calls)
        ]
    body: dict[str, Any] = {
        "id": cid,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": "offline-demo-engine",
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
    }
    if usage is not None:
        body["usage"] = usage
    return body


def split_text(text: str, words_per_delta: int = 3) -> list[str]:
    """Split ``text`` into small word groups that join back to exactly ``text``."""
    pieces: list[str] = []
    current, words = "", 0
    for token in _tokens_keeping_space(text):
        current += token
        if not token.isspace():
            words += 1
        if words >= words_per_delta and token.isspace():
            pieces.append(current)
            current, words = "", 0
    if current:
        pieces.append(current)
    return pieces


def _tokens_keeping_space(text: str) -> list[str]:
    return re.findall(r"\s+|\S+", text)


def split_arguments(arguments: str, parts: int = 3) -> list[str]:
    """Split a JSON argument string into several fragments, as streamed by OpenAI."""
    size = max(1, -(-len(arguments) // parts))
    return [arguments[i : i + size] for i in range(0, len(arguments), size)] or [""]


def stream_events(
    cid: str,
    model: str,
    content: str | None,
    calls: Sequence[ToolCall],
    finish: str | None,
    usage: dict[str, int] | None,
    include_usage: bool,
) -> list[bytes]:
    """SSE events for a streamed completion; ``finish`` None stops before the final chunk."""
    created = int(time.time())

    def chunk(delta: dict[str, Any], reason: str | None = None) -> dict[str, Any]:
        out = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": "offline-demo-engine",
            "choices": [{"index": 0, "delta": delta, "finish_reason": reason, "logprobs": None}],
        }
        if include_usage:
            out["usage"] = None  # OpenAI sends null on every chunk but the last when usage is requested
        return out

    chunks = [chunk({"role": "assistant", "content": "" if not calls else None})]
    for piece in split_text(content or ""):
        chunks.append(chunk({"content": piece}))
    for i, call in enumerate(calls):
        args = json.dumps(call.arguments, ensure_ascii=False)
        # Like OpenAI: index, id, type and name only in the first delta of each call.
        chunks.append(
            chunk(
                {
                    "tool_calls": [
                        {
                            "index": i,
                            "id": call_id(cid, i),
                            "type": "function",
                            "function": {"name": call.name, "arguments": ""},
                        }
                    ]
                }
            )
        )
        for frag in split_arguments(args):
            chunks.append(chunk({"tool_calls": [{"index": i, "function": {"arguments": frag}}]}))
    events = [sse(c) for c in chunks]
    if finish is None:
        return events
    events.append(sse(chunk({}, finish)))
    if include_usage and usage is not None:
        events.append(
            sse(
                {
                    "id": cid,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": model,
                    "system_fingerprint": "offline-demo-engine",
                    "choices": [],
                    "usage": usage,
                }
            )
        )
    events.append(b"data: [DONE]\n\n")
    return events


def sse(payload: Mapping[str, Any]) -> bytes:
    """One server-sent event carrying ``payload`` as JSON."""
    return b"data: " + json.dumps(payload, ensure_ascii=False).encode() + b"\n\n"


def models_body(ids: Sequence[str], created: int) -> dict[str, Any]:
    """The GET /v1/models list."""
    return {"object": "list", "data": [model_entry(i, created) for i in ids]}


def model_entry(model_id: str, created: int) -> dict[str, Any]:
    """One model object."""
    return {"id": model_id, "object": "model", "created": created, "owned_by": OWNER}
