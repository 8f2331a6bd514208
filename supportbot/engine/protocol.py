"""The OpenAI chat-completions wire format: validation, errors, completions, SSE.

Everything here is pure: a request body in, an :class:`Outcome` (status, headers
and either a JSON body or a list of SSE events) out. The in-process transport
and the Starlette app only replay an Outcome, so both paths behave the same.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
PART_TYPES = frozenset({"text", "image_url", "input_audio", "file"})
OWNER = "offline demo engine"

# kind -> (status, error type, code, message). Messages follow the wording of the
# real services so code that matches on them is exercised too.
FAILURES: dict[str, tuple[int, str, str | None, str]] = {
    "auth": (
        401,
        "invalid_request_error",
        "invalid_api_key",
        "Incorrect API key provided. Check OXLO_API_KEY (injected failure from the offline demo engine).",
    ),
    "forbidden": (
        403,
        "permission_denied",
        "model_not_allowed",
        "Your plan does not include this model. Choose a model in your plan or upgrade it.",
    ),
    "not_found": (
        404,
        "invalid_request_error",
        "model_not_found",
        "The model `{model}` does not exist or you do not have access to it.",
    ),
    "context_length": (400, "invalid_request_error", "context_length_exceeded", ""),
    "bad_request": (
        400,
        "invalid_request_error",
        None,
        "Invalid request (injected failure from the offline demo engine).",
    ),
    "rate_limit": (429, "requests", "rate_limit_exceeded", "Rate limit reached for requests. Please try again in 0s."),
    "server": (500, "server_error", None, "The server had an error while processing your request. Sorry about that!"),
    "bad_gateway": (502, "server_error", None, "Bad gateway: the upstream model server did not answer."),
    "unavailable": (
        503,
        "server_error",
        "service_unavailable",
        "The engine is currently overloaded, please try again later.",
    ),
    "gateway_timeout": (504, "server_error", None, "Gateway timeout: the upstream model server took too long."),
}
# Kinds that do not map to one HTTP error response.
BEHAVIOURS = ("timeout", "empty_stream", "disconnect", "invalid_json")
FAILURE_KINDS: tuple[str, ...] = (*FAILURES, *BEHAVIOURS)


class RequestInvalid(Exception):
    """A request the engine rejects; carries the OpenAI error fields."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        type_: str = "invalid_request_error",
    ) -> None:
        self.status, self.param, self.code, self.type = status, param, code, type_
        super().__init__(message)


@dataclass
class Outcome:
    """One HTTP response, described independently of the transport that sends it."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    events: list[bytes] | None = None  # SSE events; None for a plain body
    event_delay_s: float = 0.0
    drop: bool = False  # close the connection after the events, mid-stream
    hang: bool = False  # never answer (until the client gives up)
    latency_s: float = 0.0

    @property
    def streaming(self) -> bool:
        return self.events is not None


def json_outcome(payload: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Outcome:
    """A JSON response."""
    return Outcome(
        status,
        {"content-type": "application/json", **(headers or {})},
        json.dumps(payload, ensure_ascii=False).encode(),
    )


def error_outcome(err: RequestInvalid, headers: Mapping[str, str] | None = None) -> Outcome:
    """An OpenAI-shaped error response."""
    body = {"error": {"message": str(err), "type": err.type, "param": err.param, "code": err.code}}
    return json_outcome(body, err.status, headers)


def context_message(window: int, prompt: int, completion: int | None = None) -> str:
    """OpenAI's wording for a prompt that does not fit the model's window."""
    if completion:
        return (
            f"This model's maximum context length is {window} tokens. However, you requested "
            f"{prompt + completion} tokens ({prompt} in the messages, {completion} in the completion). "
            "Please reduce the length of the messages or completion."
        )
    return (
        f"This model's maximum context length is {window} tokens. However, your messages resulted in "
        f"{prompt} tokens. Please reduce the length of the messages."
    )


def failure(kind: str, model: str, window: int = 8192, prompt: int = 0) -> RequestInvalid:
    """The error an injected failure ``kind`` answers with."""
    status, type_, code, message = FAILURES[kind]
    if kind == "context_length":
        message = context_message(window, max(prompt, window + 1))
    param = "messages" if kind == "context_length" else ("model" if kind == "not_found" else None)
    return RequestInvalid(status, message.format(model=model), param=param, code=code, type_=type_)


def failure_outcome(kind: str, model: str, window: int = 8192, prompt: int = 0) -> Outcome:
    """The HTTP response of an injected error kind (gateways answer in HTML, as nginx does)."""
    headers: dict[str, str] = {}
    if kind == "rate_limit":
        # The SDK ignores a zero Retry-After and backs off ~0.5 s; retry-after-ms keeps test retries fast.
        headers = {"retry-after": "0", "retry-after-ms": "10"}
    if kind in ("bad_gateway", "gateway_timeout"):
        status, _, _, message = FAILURES[kind]
        html = f"<html><head><title>{status}</title></head><body><h1>{message}</h1></body></html>"
        return Outcome(status, {"content-type": "text/html"}, html.encode())
    return error_outcome(failure(kind, model, window, prompt), headers)


# -- validation ---------------------------------------------------------------


def validate_chat(body: Any) -> None:
    """Raise RequestInvalid (400) when ``body`` is not a valid chat-completions request."""
    if not isinstance(body, dict):
        raise RequestInvalid(400, "The request body must be a JSON object.")
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise RequestInvalid(400, "you must provide a model parameter", param="model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestInvalid(400, "'messages' must be a non-empty array.", param="messages")
    pending: set[str] = set()  # tool call ids still waiting for their tool message
    seen: set[str] = set()
    for i, msg in enumerate(messages):
        where = f"messages.[{i}]"
        if not isinstance(msg, dict):
            raise RequestInvalid(400, f"{where} must be an object.", param=where)
        role = msg.get("role")
        if role not in ROLES:
            raise RequestInvalid(
                400,
                f"Invalid value: {role!r}. Supported values are: 'system', 'assistant', "
                "'user', 'tool', 'function' and 'developer'.",
                param=f"{where}.role",
                code="invalid_value",
            )
        if pending and role != "tool":
            raise RequestInvalid(
                400,
                "An assistant message with 'tool_calls' must be followed by tool messages "
                f"responding to each 'tool_call_id'. The following tool_call_ids did not have "
                f"response messages: {', '.join(sorted(pending))}",
                param=where,
            )
        _validate_content(msg.get("content"), where, role)
        if role == "assistant":
            for j, call in enumerate(msg.get("tool_calls") or ()):
                fn = call.get("function") if isinstance(call, dict) else None
                if not isinstance(fn, dict) or not fn.get("name") or not call.get("id"):
                    raise RequestInvalid(
                        400, "Each tool call needs an id and a function name.", param=f"{where}.tool_calls.[{j}]"
                    )
                pending.add(call["id"])
                seen.add(call["id"])
        elif role == "tool":
            call_id = msg.get("tool_call_id")
            if not call_id or call_id not in seen:
                raise RequestInvalid(
                    400,
                    "Invalid parameter: messages with role 'tool' must be a response to a "
                    "preceeding message with 'tool_calls'.",
                    param=f"{where}.role",
                )
            pending.discard(call_id)
    if pending:
        raise RequestInvalid(
            400,
            "An assistant message with 'tool_calls' must be followed by tool messages "
            f"responding to each 'tool_call_id'. Missing: {', '.join(sorted(pending))}",
            param="messages",
        )
    _validate_options(body)


def _validate_content(content: Any, where: str, role: str) -> None:
    if content is None or isinstance(content, str):
        if content is None and role in ("user", "system", "developer"):
            raise RequestInvalid(
                400, f"Invalid value for '{where}.content': expected a string or an array.", param=f"{where}.content"
            )
        return
    if not isinstance(content, list):
        raise RequestInvalid(400, f"Invalid type for '{where}.content'.", param=f"{where}.content")
    for k, part in enumerate(content):
        p = f"{where}.content.[{k}]"
        if not isinstance(part, dict) or part.get("type") not in PART_TYPES:
            raise RequestInvalid(400, f"Invalid content part type at '{p}'.", param=f"{p}.type", code="invalid_value")
        if part["type"] == "image_url":
            url = (part.get("image_url") or {}).get("url") if isinstance(part.get("image_url"), dict) else None
            if not isinstance(url, str) or not url.startswith(("data:image/", "http://", "https://")):
                raise RequestInvalid(
                    400,
                    f"Invalid image_url at '{p}': expected a data URL or an http(s) URL.",
                    param=f"{p}.image_url.url",
                )
        if part["type"] == "text" and not isinstance(part.get("text"), str):
            raise RequestInvalid(400, f"Missing text at '{p}'.", param=f"{p}.text")


def _validate_options(body: dict) -> None:
    tools = body.get("tools")
    names: set[str] = set()
    if tools is not None:
        if not isinstance(tools, list):
            raise RequestInvalid(400, "'tools' must be an array.", param="tools")
        for i, tool in enumerate(tools):
            fn = tool.get("function") if isinstance(tool, dict) else None
            if (
                not isinstance(tool, dict)
                or tool.get("type") != "function"
                or not isinstance(fn, dict)
                or not fn.get("name")
            ):
                raise RequestInvalid(
                    400, f"Invalid tool at tools[{i}]: expected a function with a name.", param=f"tools[{i}]"
                )
            names.add(fn["name"])
    choice = body.get("tool_choice")
    if isinstance(choice, str) and choice not in ("auto", "none", "required"):
        raise RequestInvalid(400, f"Invalid value for 'tool_choice': {choice!r}.", param="tool_choice")
    if choice == "required" and not names:
        raise RequestInvalid(400, "tool_choice 'required' needs 'tools'.", param="tool_choice")
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        if name not in names:
            raise RequestInvalid(400, f"Invalid tool_choice: no tool named {name!r} in 'tools'.", param="tool_choice")
    for key in ("max_tokens", "max_completion_tokens"):
        value = body.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise RequestInvalid(400, f"Invalid '{key}': expected an integer of at least 1.", param=key)
    if body.get("stream_options") is not None and not body.get("stream"):
        raise RequestInvalid(
            400, "The 'stream_options' parameter is only allowed when 'stream' is enabled.", param="stream_options"
        )
    fmt = body.get("response_format")
    if fmt is not None:
        kind = fmt.get("type") if isinstance(fmt, dict) else None
        if kind not in ("text", "json_object", "json_schema"):
            raise RequestInvalid(400, "Invalid 'response_format.type'.", param="response_format.type")
        if kind == "json_schema":
            spec = fmt.get("json_schema")
            if not isinstance(spec, dict) or not spec.get("name") or not isinstance(spec.get("schema", {}), dict):
                raise RequestInvalid(
                    400,
                    "'response_format.json_schema' needs a name and a schema object.",
                    param="response_format.json_schema",
                )


# -- responses ----------------------------------------------------------------


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
