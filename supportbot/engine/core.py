"""OfflineEngine: routes OpenAI-protocol requests to the rules and injects failures."""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from supportbot.engine import completions
from supportbot.engine import protocol as p
from supportbot.engine.responder import Reply, respond
from supportbot.engine.tokens import count_messages, count_tokens, count_tools
from supportbot.engine.validation import validate_chat

OWN_MODEL_ID = "offline-demo-engine"
FAIL_HEADER = "x-supportbot-fail"
# Seconds added before this request's answer (a tester's "slow service"), at most MAX_LATENCY_S: a
# header anyone can send must not hold a request (and its slot) for long.
LATENCY_HEADER = "x-supportbot-latency"
MAX_LATENCY_S = 10.0
FAIL_MODEL_PREFIX = "fail-"
# Used when an injected context_length failure names a model the engine has no window for.
DEFAULT_WINDOW = 8192
# The model list and context windows it serves when given none: read from the editable catalog
# file as plain JSON (ids and windows only), never through the product's catalog code.
DEFAULT_MODELS_FILE = Path(__file__).resolve().parents[2] / "assets" / "models.json"


def load_windows(path: Path | str = DEFAULT_MODELS_FILE) -> dict[str, int]:
    """``{model id: context window}`` from a catalog file (``{"models": [{"id", "context_window"}]}``)."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    return {str(m["id"]): int(m["context_window"]) for m in data.get("models", ())}


class OfflineEngine:
    """A deterministic, rule-based support agent speaking the chat-completions protocol."""

    def __init__(
        self,
        *,
        latency_s: float = 0.0,
        send_usage: bool = True,
        model_ids: Iterable[str] | None = None,
        stream_delay_s: float = 0.0,
        context_windows: Mapping[str, int] | None = None,
        keep_requests: bool = True,
    ) -> None:
        """``context_windows`` (model id -> tokens) is all the engine knows of a catalog; by default it
        is read from ``assets/models.json``. ``model_ids`` is what ``GET /models`` lists (default: those
        ids and the engine's own). ``keep_requests`` keeps every request body in ``requests`` for tests
        to inspect; an engine serving a hosted app keeps none (they would grow without bound)."""
        self.latency_s = latency_s
        self.send_usage = send_usage
        self.stream_delay_s = stream_delay_s
        self.windows = dict(load_windows() if context_windows is None else context_windows)
        self.model_ids = list(model_ids) if model_ids is not None else [*self.windows, OWN_MODEL_ID]
        self.keep_requests = keep_requests
        self.requests: list[dict] = []  # JSON bodies of chat requests, for tests to inspect
        self.created = int(time.time())
        self._injected: deque[tuple[str, str | None]] = deque()  # (kind, the model it is for, or any)
        self._lock = threading.Lock()
        # Set on close so hanging (injected timeout) sync requests return promptly.
        self.closing = threading.Event()

    def inject(self, kind: str, times: int = 1, *, model: str | None = None) -> None:
        """Make the next ``times`` chat requests fail as ``kind`` (see protocol.FAILURE_KINDS); with ``model``,
        only requests for that model (the others pass it by: one model of a service failing)."""
        if kind not in p.FAILURE_KINDS:
            raise ValueError(f"unknown failure kind {kind!r}; known: {', '.join(p.FAILURE_KINDS)}")
        if times < 1:
            raise ValueError("times must be at least 1")
        with self._lock:
            self._injected.extend([(kind, model)] * times)

    def pending_failures(self) -> list[str]:
        """The injected failures not used yet, in order."""
        with self._lock:
            return [kind for kind, _ in self._injected]

    def close(self) -> None:
        """Release requests hanging on an injected timeout."""
        self.closing.set()

    def transport(self) -> Any:
        """An in-process httpx transport (sync and async) for base_url http://offline.engine/v1."""
        from supportbot.engine.transport import EngineTransport

        return EngineTransport(self)

    def asgi_app(self) -> Any:
        """A Starlette app serving /v1/models and /v1/chat/completions."""
        from supportbot.engine.asgi import build_app

        return build_app(self)

    # -- routing ----------------------------------------------------------------

    def handle(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> p.Outcome:
        """Answer one HTTP request (path may carry any prefix before /models or /chat/completions)."""
        path = path.rstrip("/")
        if path.endswith("/chat/completions"):
            if method != "POST":
                return p.error_outcome(p.RequestInvalid(405, f"Method {method} not allowed here; use POST."))
            return self.chat(headers, body)
        if path.endswith("/models") and method == "GET":
            return p.json_outcome(completions.models_body(self.model_ids, self.created))
        if "/models/" in path and method == "GET":
            model = path.rsplit("/models/", 1)[1]
            if model in self.model_ids:
                return p.json_outcome(completions.model_entry(model, self.created))
            return p.error_outcome(p.failure("not_found", model))
        return p.error_outcome(p.RequestInvalid(404, f"Invalid URL ({method} {path})", code="unknown_url"))

    def chat(self, headers: Mapping[str, str], raw: bytes) -> p.Outcome:
        """POST /chat/completions."""
        try:
            body = json.loads(raw or b"null")
        except (json.JSONDecodeError, UnicodeDecodeError):
            return p.error_outcome(p.RequestInvalid(400, "We could not parse the JSON body of your request."))
        if isinstance(body, dict):
            if self.keep_requests:
                self.requests.append(body)
        try:
            delay = self.latency_s + latency_for(headers)
            kind = self._failure_for(headers, body)
            if kind in p.FAILURES:
                outcome = self._injected_error(kind, body)
                outcome.latency_s = delay
                return outcome
            validate_chat(body)
            if kind is None or not body["model"].startswith(FAIL_MODEL_PREFIX):
                self._check_model(body)
        except p.RequestInvalid as err:
            return p.error_outcome(err)
        outcome = self._complete(body, kind)
        outcome.latency_s = delay
        return outcome

    def _failure_for(self, headers: Mapping[str, str], body: Any) -> str | None:
        named = headers.get(FAIL_HEADER)
        if named:
            if named not in p.FAILURE_KINDS:
                raise p.RequestInvalid(400, f"Unknown {FAIL_HEADER} {named!r}; known: {', '.join(p.FAILURE_KINDS)}")
            return named
        model = body.get("model") if isinstance(body, dict) else None
        if (
            isinstance(model, str)
            and model.startswith(FAIL_MODEL_PREFIX)
            and model[len(FAIL_MODEL_PREFIX) :] in p.FAILURE_KINDS
        ):
            return model[len(FAIL_MODEL_PREFIX) :]
        wants_json = isinstance(body, dict) and (body.get("response_format") or {}).get("type") in (
            "json_object",
            "json_schema",
        )
        with self._lock:
            # The first injection for this request's model (or for any); invalid_json only makes sense for a
            # JSON request: other requests leave it queued.
            for i, (kind, only) in enumerate(self._injected):
                if only is not None and only != model:
                    continue
                if kind == "invalid_json" and not wants_json:
                    return None
                del self._injected[i]
                return kind
        return None

    def _injected_error(self, kind: str, body: Any) -> p.Outcome:
        model = body.get("model", "") if isinstance(body, dict) else ""
        window = self.windows.get(model, DEFAULT_WINDOW)
        prompt = (
            count_messages(body.get("messages") or [])
            if isinstance(body, dict)
            and isinstance(body.get("messages"), list)
            and all(isinstance(m, dict) for m in body["messages"])
            else 0
        )
        outcome = p.failure_outcome(kind, model, window, prompt)
        outcome.latency_s = self.latency_s
        return outcome

    def _check_model(self, body: dict) -> None:
        model = body["model"]
        if model not in self.model_ids:
            raise p.failure("not_found", model)
        if model not in self.windows:
            return
        window = self.windows[model]
        prompt = self.prompt_tokens(body)
        wanted = body.get("max_completion_tokens") or body.get("max_tokens")
        if prompt > window or (wanted and prompt + wanted > window):
            raise p.RequestInvalid(
                400,
                p.context_message(window, prompt, wanted if prompt <= window else None),
                param="messages",
                code="context_length_exceeded",
            )

    @staticmethod
    def prompt_tokens(body: Mapping[str, Any]) -> int:
        """The engine's own count of a request's prompt tokens (messages plus tool schemas)."""
        return count_messages(body["messages"]) + count_tools(body.get("tools"))

    # -- completion -------------------------------------------------------------

    def _complete(self, body: dict, kind: str | None) -> p.Outcome:
        stream = bool(body.get("stream"))
        if kind == "timeout":
            return p.Outcome(hang=True)
        if kind == "empty_stream":
            # What llama.cpp's server does on a context overflow while streaming.
            media = "text/event-stream" if stream else "application/json"
            return p.Outcome(200, {"content-type": media}, events=[] if stream else None)
        reply = respond(body)
        if kind == "disconnect" and not reply.content:
            # "A few content chunks, then the drop": answer in text even when the rules want tools.
            reply = respond({**body, "tool_choice": "none"})
        if kind == "invalid_json" and reply.content is not None:
            # A chatty preamble, a code fence and a cut-off object: what a repair step must survive.
            reply = Reply("Here is the JSON you asked for:\n```json\n" + reply.content[:-2], is_json=True)
        content, finish = reply.content, "tool_calls" if reply.calls else "stop"
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        if content and limit and count_tokens(content) > limit:
            content, finish = truncate_to_tokens(content, limit), "length"
        usage = None
        if self.send_usage:
            completion = count_tokens(content or "") + sum(
                count_tokens(c.name) + count_tokens(json.dumps(c.arguments)) for c in reply.calls
            )
            usage = completions.usage_block(self.prompt_tokens(body), completion)
        cid = completions.completion_id(body)
        model = body["model"]
        if not stream:
            if kind == "disconnect":
                return p.Outcome(
                    200, {"content-type": "application/json"}, events=[b'{"id": "' + cid.encode()], drop=True
                )
            return p.json_outcome(completions.completion_body(cid, model, content, reply.calls, finish, usage))
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        if kind == "disconnect":
            events = completions.stream_events(cid, model, content, reply.calls, None, None, include_usage)[:4]
            return p.Outcome(
                200, {"content-type": "text/event-stream"}, events=events, drop=True, event_delay_s=self.stream_delay_s
            )
        events = completions.stream_events(cid, model, content, reply.calls, finish, usage, include_usage)
        return p.Outcome(
            200,
            {"content-type": "text/event-stream", "cache-control": "no-cache"},
            events=events,
            event_delay_s=self.stream_delay_s,
        )


def latency_for(headers: Mapping[str, str]) -> float:
    """Seconds the ``x-supportbot-latency`` header asks for, capped at MAX_LATENCY_S; 400 for a bad value."""
    raw = headers.get(LATENCY_HEADER)
    if raw is None or raw == "":
        return 0.0
    try:
        seconds = float(raw[:32])
    except ValueError:
        seconds = float("nan")
    if not 0 <= seconds < float("inf"):  # also refuses NaN
        raise p.RequestInvalid(400, f"{LATENCY_HEADER} must be a number of seconds from 0 (got {raw[:32]!r})")
    return min(seconds, MAX_LATENCY_S)


def truncate_to_tokens(text: str, limit: int) -> str:
    """The longest word-prefix of ``text`` whose estimate fits ``limit`` tokens."""
    words = text.split(" ")
    lo, hi = 0, len(words)
    while lo < hi:  # binary search: estimates grow with length
        mid = (lo + hi + 1) // 2
        if count_tokens(" ".join(words[:mid])) <= limit:
            lo = mid
        else:
            hi = mid - 1
    return " ".join(words[:lo])
