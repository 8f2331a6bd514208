"""A scripted model for tests: an httpx transport that answers as an OpenAI-compatible service.

Shipped in the package, like ``httpx.MockTransport`` and openai-agents' fake model, so a test
drives the real ``openai`` SDK (and everything above it) with replies it chooses: text, tool
calls, finish reasons, usage, HTTP errors with OpenAI-style bodies, streams that end early or
drop, requests that time out. It answers ``GET /v1/models`` and ``POST /v1/chat/completions``
(streamed as SSE or as one JSON body), for ``httpx.Client`` and ``httpx.AsyncClient`` alike,
and records every request it gets::

    model = ScriptedModel(
        reply(tool_call("check_order_status", {"order_id": "48291"})),
        reply("It ships tomorrow.", usage=(120, 8)),
    )
    services = Services.create(settings, transport=model)  # or ClientFactory(settings, transport=model)
    ...
    assert model.chat_bodies[1]["messages"][-1]["role"] == "tool"

Each chat request takes the next step of the script. A request past its end gets a 500 that
says so (and is not retried), so a test never hangs or passes by accident. A step may also be
a function of the request body that returns a step. Use it where a test is about the agent
or the conversation; the offline engine (``supportbot.engine``) is for tests of its rules.
It imports nothing of supportbot: it fakes the service, not the product.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

DEFAULT_MODELS = ("scripted-model",)
DEFAULT_USAGE = (10, 5)
# The SDK waits ~0.5 s before a retry unless told otherwise; a test need not wait that long.
FAST_RETRY = {"retry-after-ms": "10"}
_DROPPED = "peer closed connection without sending complete message body (incomplete chunked read)"
_AUTO = object()

# status -> (error type, message), in the wording of OpenAI's API.
_ERRORS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "Invalid request."),
    401: ("invalid_request_error", "Incorrect API key provided."),
    403: ("permission_denied", "You are not allowed to use this model."),
    404: ("invalid_request_error", "The model does not exist or you do not have access to it."),
    408: ("timeout", "Request timed out."),
    409: ("conflict", "Conflict."),
    429: ("requests", "Rate limit reached for requests."),
    500: ("server_error", "The server had an error while processing your request."),
    502: ("server_error", "Bad gateway."),
    503: ("server_error", "The engine is currently overloaded, please try again later."),
    504: ("server_error", "Gateway timeout."),
}


@dataclass(frozen=True)
class ToolCall:
    """A function call the scripted model makes; ``arguments`` is the JSON text it streams."""

    name: str
    arguments: str = "{}"
    id: str | None = None  # None: ``call_<request>_<index>``


@dataclass(frozen=True)
class Reply:
    """A 200 answer: text and/or tool calls, how it ends, and the usage it reports."""

    text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    finish_reason: str | None = "stop"  # None: the stream ends without one (cut off)
    usage: tuple[int, int] | None = DEFAULT_USAGE  # (prompt, completion); None sends no usage
    pieces: int = 3  # deltas the text, and each call's arguments, are streamed in
    drop: bool = False  # the connection drops after the content, before the finish reason
    delay_s: float = 0.0  # before the response starts
    chunk_delay_s: float = 0.0  # between streamed chunks


@dataclass(frozen=True)
class Error:
    """An HTTP error with an OpenAI-style body ``{"error": {message, type, param, code}}``."""

    status: int
    message: str
    type: str
    code: str | None = None
    param: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Raw:
    """Any response, byte for byte (an HTML gateway page, an empty stream)."""

    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""


@dataclass(frozen=True)
class Hang:
    """No answer until the client's read timeout, then ``httpx.ReadTimeout``, as on a real socket."""


Step = Reply | Error | Raw | Hang
Script = Step | Callable[[dict[str, Any]], Step]


def tool_call(name: str, arguments: Mapping[str, Any] | str | None = None, *, id: str | None = None) -> ToolCall:
    """A tool call; ``arguments`` as a mapping (sent as JSON) or as raw text (may be broken on purpose)."""
    text = arguments if isinstance(arguments, str) else json.dumps(dict(arguments or {}))
    return ToolCall(name, text, id)


def reply(
    *content: str | ToolCall,
    finish_reason: Any = _AUTO,
    usage: tuple[int, int] | None = DEFAULT_USAGE,
    pieces: int = 3,
    drop: bool = False,
    delay_s: float = 0.0,
    chunk_delay_s: float = 0.0,
) -> Reply:
    """A reply of text and tool calls in any order given; it finishes with "tool_calls" when it has
    calls, else "stop", unless ``finish_reason`` says otherwise (None: no finish reason at all)."""
    text = "".join(c for c in content if isinstance(c, str))
    calls = tuple(c for c in content if isinstance(c, ToolCall))
    if finish_reason is _AUTO:
        finish_reason = "tool_calls" if calls else "stop"
    return Reply(text, calls, finish_reason, usage, pieces, drop, delay_s, chunk_delay_s)


def error(
    status: int,
    message: str | None = None,
    *,
    code: str | None = None,
    type: str | None = None,
    param: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Error:
    """An OpenAI-style error; retryable statuses (408, 409, 429, 5xx) ask the SDK to retry after 10 ms."""
    default_type, default_message = _ERRORS.get(status, ("api_error", f"HTTP {status}."))
    retryable = status in (408, 409, 429) or status >= 500
    merged = {**(FAST_RETRY if retryable else {}), **(headers or {})}
    return Error(status, message or default_message, type or default_type, code, param, merged)


def empty_stream() -> Raw:
    """A 200 event stream with no events (what some servers send on a context overflow)."""
    return Raw(200, {"content-type": "text/event-stream"}, b"")


def timeout() -> Hang:
    """A request that is never answered: the client's read timeout fires."""
    return Hang()


@dataclass(frozen=True)
class Recorded:
    """One request the scripted model got."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any  # the parsed JSON body, or None
    timeout: dict[str, float | None] | None = None  # the client's timeouts for this request (httpx's extension)


class ScriptedModel(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """An OpenAI-compatible service that says what the script says; see the module docstring."""

    def __init__(self, *script: Script, models: Sequence[str] = DEFAULT_MODELS, repeat_last: bool = False) -> None:
        self.models = list(models)
        self.repeat_last = repeat_last  # the last step answers every request past the end
        self.requests: list[Recorded] = []
        self.unexpected = 0  # chat requests that came after the script ended
        self._script: list[Script] = list(script)
        self._chats = 0
        self._lock = threading.Lock()
        self._closing = threading.Event()

    def add(self, *script: Script) -> None:
        """Append steps to the script."""
        with self._lock:
            self._script.extend(script)

    @property
    def remaining(self) -> int:
        """Steps not used yet."""
        with self._lock:
            return len(self._script)

    @property
    def chat_bodies(self) -> list[dict[str, Any]]:
        """The JSON bodies of the chat-completion requests, in order."""
        return [r.body for r in self.requests if r.path.endswith("/chat/completions") and isinstance(r.body, dict)]

    def close(self) -> None:
        """Release sync requests hanging on a scripted timeout."""
        self._closing.set()

    # -- transports ---------------------------------------------------------------------------

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Answer a request from a sync client."""
        step, body, number = self._answer(request, request.read())
        if isinstance(step, Hang):
            self._closing.wait(_read_timeout(request))
            raise httpx.ReadTimeout("timed out (scripted)", request=request)
        if isinstance(step, Reply) and step.delay_s:
            time.sleep(step.delay_s)
        return self._response(step, body, number, request)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Answer a request from an async client."""
        step, body, number = self._answer(request, await request.aread())
        if isinstance(step, Hang):
            await asyncio.sleep(_read_timeout(request))  # cancellable, like a real socket read
            raise httpx.ReadTimeout("timed out (scripted)", request=request)
        if isinstance(step, Reply) and step.delay_s:
            await asyncio.sleep(step.delay_s)
        return self._response(step, body, number, request)

    # -- answers ------------------------------------------------------------------------------

    def _answer(self, request: httpx.Request, raw: bytes) -> tuple[Step, Any, int]:
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        path = request.url.path.rstrip("/")
        with self._lock:
            self.requests.append(
                Recorded(request.method, path, dict(request.headers), body, request.extensions.get("timeout"))
            )
            if not path.endswith("/chat/completions"):
                return self._other(request.method, path), body, 0
            if request.method != "POST":
                return error(405, "Use POST."), body, 0
            self._chats += 1
            number = self._chats
            if not self._script:
                self.unexpected += 1
                message = f"ScriptedModel: no step left for chat request #{number}; the script had {number - 1}."
                return error(500, message, headers={"x-should-retry": "false"}), body, number
            step = self._script[0] if self.repeat_last and len(self._script) == 1 else self._script.pop(0)
        if callable(step):
            step = step(body if isinstance(body, dict) else {})
        return step, body, number

    def _other(self, method: str, path: str) -> Step:
        if method == "GET" and path.endswith("/models"):
            return Raw(200, _JSON, _dumps({"object": "list", "data": [_model(m) for m in self.models]}))
        if method == "GET" and "/models/" in path:
            model = path.rsplit("/models/", 1)[1]
            if model in self.models:
                return Raw(200, _JSON, _dumps(_model(model)))
            return error(404, f"The model `{model}` does not exist.", code="model_not_found", param="model")
        return error(404, f"Invalid URL ({method} {path})", code="unknown_url")

    def _response(self, step: Step, body: Any, number: int, request: httpx.Request) -> httpx.Response:
        if isinstance(step, Raw):
            return httpx.Response(step.status, headers=dict(step.headers), content=step.body)
        if isinstance(step, Error):
            payload = {"error": {"message": step.message, "type": step.type, "param": step.param, "code": step.code}}
            return httpx.Response(step.status, headers={**_JSON, **step.headers}, content=_dumps(payload))
        if not isinstance(step, Reply):
            raise TypeError(f"a script step must be a Reply, Error, Raw or Hang, not {type(step).__name__}")
        body = body if isinstance(body, dict) else {}
        model = str(body.get("model", ""))
        calls = [(c.id or f"call_{number}_{i}", c) for i, c in enumerate(step.tool_calls)]
        if not body.get("stream"):
            if step.drop:
                raise httpx.RemoteProtocolError(_DROPPED, request=request)
            return httpx.Response(200, headers=_JSON, content=_dumps(_completion(step, model, number, calls)))
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        stream = _Stream(_events(step, model, number, calls, include_usage), step, request)
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, stream=stream)


_JSON = {"content-type": "application/json"}


def _dumps(payload: Any) -> bytes:
    return json.dumps(payload, ensure_ascii=False).encode()


def _model(model_id: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": 0, "owned_by": "scripted"}


def _read_timeout(request: httpx.Request) -> float:
    timeout = (request.extensions.get("timeout") or {}).get("read")
    return float(timeout) if timeout is not None else 3600.0


def _split(text: str, pieces: int) -> list[str]:
    """``text`` in about ``pieces`` consecutive parts that join back to it exactly."""
    size = max(1, -(-len(text) // max(1, pieces)))
    return [text[i : i + size] for i in range(0, len(text), size)]


def _usage(step: Reply) -> dict[str, int] | None:
    if step.usage is None:
        return None
    prompt, completion = step.usage
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _completion(step: Reply, model: str, number: int, calls: list[tuple[str, ToolCall]]) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": step.text or None}
    if calls:
        message["tool_calls"] = [
            {"id": cid, "type": "function", "function": {"name": c.name, "arguments": c.arguments}} for cid, c in calls
        ]
    out: dict[str, Any] = {
        "id": f"chatcmpl-scripted-{number}",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": step.finish_reason, "logprobs": None}],
    }
    if (usage := _usage(step)) is not None:
        out["usage"] = usage
    return out


def _events(
    step: Reply, model: str, number: int, calls: list[tuple[str, ToolCall]], include_usage: bool
) -> list[bytes]:
    """The SSE events of a streamed reply, in OpenAI's delta shape (``[DONE]`` only when it finishes)."""

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        out = {
            "id": f"chatcmpl-scripted-{number}",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
        }
        if include_usage:
            out["usage"] = None  # OpenAI sends null on every chunk but the last
        return out

    chunks = [chunk({"role": "assistant", "content": "" if step.text or not calls else None})]
    chunks += [chunk({"content": piece}) for piece in _split(step.text, step.pieces)]
    for i, (cid, call) in enumerate(calls):
        # Like OpenAI: index, id, type and name only in the first delta of each call.
        first = {"index": i, "id": cid, "type": "function", "function": {"name": call.name, "arguments": ""}}
        chunks.append(chunk({"tool_calls": [first]}))
        for frag in _split(call.arguments, step.pieces):
            chunks.append(chunk({"tool_calls": [{"index": i, "function": {"arguments": frag}}]}))
    events = [_sse(c) for c in chunks]
    if step.drop or step.finish_reason is None:
        return events
    events.append(_sse(chunk({}, step.finish_reason)))
    usage = _usage(step)
    if include_usage and usage is not None:
        last = {"id": f"chatcmpl-scripted-{number}", "object": "chat.completion.chunk", "created": 0, "model": model}
        events.append(_sse({**last, "choices": [], "usage": usage}))
    events.append(b"data: [DONE]\n\n")
    return events


def _sse(payload: Mapping[str, Any]) -> bytes:
    return b"data: " + _dumps(payload) + b"\n\n"


class _Stream(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A reply's SSE events, paced and maybe dropped, for sync and async clients alike."""

    def __init__(self, events: list[bytes], step: Reply, request: httpx.Request) -> None:
        self.events, self.step, self.request = events, step, request

    def __iter__(self) -> Iterator[bytes]:
        for i, event in enumerate(self.events):
            if i and self.step.chunk_delay_s:
                time.sleep(self.step.chunk_delay_s)
            yield event
        if self.step.drop:
            raise httpx.RemoteProtocolError(_DROPPED, request=self.request)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for i, event in enumerate(self.events):
            if i and self.step.chunk_delay_s:
                await asyncio.sleep(self.step.chunk_delay_s)
            yield event
        if self.step.drop:
            raise httpx.RemoteProtocolError(_DROPPED, request=self.request)
