"""Record and replay: every request and response of a session, one JSON line each.

``SUPPORTBOT_RECORD=path.jsonl`` wraps the SDK's httpx transport (live or offline) in
:class:`RecordingTransport`; each exchange is appended once its response has been read to the
end. A line holds the endpoint, the request's JSON body, the status, the content type and the
body (or the streamed server-sent events, one string each). No header is ever written, so
neither is ``Authorization``; the key is also masked wherever it appears (``config.redact``).

``SUPPORTBOT_ENGINE=replay`` with ``SUPPORTBOT_CASSETTE=path.jsonl`` answers from a cassette
through :class:`ReplayTransport`, in process, the way the offline engine's transport does: the
SDK, the agent and the tools run exactly as they do live.

Matching (:func:`request_key`): same method, endpoint, model and messages, after normalising
what honestly differs between two runs of one conversation:

* tool-call ids are renumbered in order of appearance (live services invent them per call);
* tool results are left out: our own tools compute them again on replay, with today's dates
  and fresh refund and escalation ids;
* tool-call arguments are compared as JSON values (key order and spacing ignored).

Everything else counts: the system prompt, every user and assistant message, images. Other
request fields (tools, max_tokens, stream options) are ignored. Recordings of one request play
in the order recorded and the last one repeats, so a demo can be replayed again and again. A
request with no recording gets a 400 error that says so (code ``no_recording``): the agent shows
it like any service error, never an invented answer.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx

from supportbot.config import redact
from supportbot.errors import ConfigError

VERSION = 1
REPLAY_BASE_URL = "http://replay.cassette/v1"
MISS_CODE = "no_recording"
_TIMEOUTS = {"ReadTimeout", "WriteTimeout", "ConnectTimeout", "PoolTimeout", "TimeoutException"}


def endpoint_of(url: httpx.URL, base_path: str) -> str:
    """The request path relative to the client's base URL, e.g. ``/chat/completions``."""
    base = base_path.rstrip("/")
    return url.path[len(base) :] if base and url.path.startswith(base + "/") else url.path


def request_key(method: str, endpoint: str, body: Any) -> str:
    """A digest of what a recording must match: method, endpoint, model and normalised messages."""
    shown: dict[str, Any] = {"method": method.upper(), "endpoint": endpoint}
    if isinstance(body, dict):
        ids: dict[Any, str] = {}

        def renumber(call_id: Any) -> str:
            return ids.setdefault(call_id, f"call#{len(ids) + 1}")

        messages = []
        for message in body.get("messages") or ():
            if not isinstance(message, dict):
                messages.append(message)
                continue
            if message.get("role") == "tool":
                # Results are recomputed on replay (dates, fresh ids): only their place counts.
                messages.append({"role": "tool", "tool_call_id": renumber(message.get("tool_call_id"))})
                continue
            message = dict(message)
            if message.get("tool_calls"):
                message["tool_calls"] = [_call(c, renumber) for c in message["tool_calls"]]
            messages.append(message)
        shown |= {"model": body.get("model"), "messages": messages}
    text = json.dumps(shown, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _call(call: Any, renumber) -> Any:
    if not isinstance(call, dict):
        return call
    fn = call.get("function") or {}
    arguments = fn.get("arguments")
    try:
        arguments = json.loads(arguments) if isinstance(arguments, str) else arguments
    except ValueError:
        pass  # compared as the raw text the model wrote
    return {"id": renumber(call.get("id")), "name": fn.get("name"), "arguments": arguments}


def _json_or_text(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return raw.decode("utf-8", "replace")


# --- recording ------------------------------------------------------------------------------


class RecordingTransport(httpx.AsyncBaseTransport):
    """Passes requests to ``inner`` and appends each exchange to ``path`` (JSON lines)."""

    def __init__(
        self, inner: httpx.AsyncBaseTransport, path: str | Path, *, base_url: str, secret: str | None = None
    ) -> None:
        self.inner = inner
        self.path = Path(path)
        self.secret = secret
        self.base_path = httpx.URL(base_url).path
        self._lock = threading.Lock()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Forward the request; the response streams through unchanged while it is copied."""
        raw = await request.aread()
        entry: dict[str, Any] = {
            "v": VERSION,
            "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "request": {
                "method": request.method,
                "endpoint": endpoint_of(request.url, self.base_path),
                "body": raw,  # parsed when written, off the event loop: it grows with the prompt
            },
        }
        try:
            response = await self.inner.handle_async_request(request)
        except httpx.HTTPError as exc:
            entry["error"] = _error(exc)
            await asyncio.to_thread(self.write, entry)
            raise
        tee = _Tee(response, entry, self)
        return httpx.Response(
            response.status_code, headers=response.headers, stream=tee, extensions=response.extensions
        )

    def write(self, entry: dict[str, Any]) -> None:
        """Append one exchange; the key is masked anywhere in it (blocking: call in a thread)."""
        if isinstance(body := entry["request"]["body"], bytes):
            entry["request"]["body"] = _json_or_text(body)
        line = redact(json.dumps(entry, ensure_ascii=False), self.secret)
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as f:
                f.write(line + "\n")

    async def aclose(self) -> None:
        """Close the wrapped transport."""
        await self.inner.aclose()


class _Tee(httpx.AsyncByteStream):
    """Yields the inner response's bytes and records them when the stream ends or breaks."""

    def __init__(self, response: httpx.Response, entry: dict[str, Any], recorder: RecordingTransport) -> None:
        self.response, self.entry, self.recorder = response, entry, recorder
        self.chunks: list[bytes] = []
        self.written = False

    async def __aiter__(self):
        try:
            async for chunk in self.response.stream:
                self.chunks.append(chunk)
                yield chunk
        except httpx.HTTPError as exc:
            if self._claim():
                await asyncio.to_thread(self._record, exc)
            raise
        if self._claim():
            await asyncio.to_thread(self._record, None)

    async def aclose(self) -> None:
        if self._claim():  # the reader stopped early (a stopped turn): keep what arrived
            # Not awaited: the task may be being cancelled, and the write must not block the loop.
            asyncio.get_running_loop().run_in_executor(None, self._record, httpx.StreamClosed())
        await self.response.aclose()

    def _claim(self) -> bool:
        """True the first time: exactly one of the endings records the exchange."""
        first, self.written = not self.written, True
        return first

    def _record(self, exc: Exception | None) -> None:
        self.entry["response"] = _response_entry(self.response, b"".join(self.chunks))
        if exc is not None:
            self.entry["error"] = _error(exc)
        self.recorder.write(self.entry)


def _response_entry(response: httpx.Response, raw: bytes) -> dict[str, Any]:
    ctype = response.headers.get("content-type", "")
    if encoding := response.headers.get("content-encoding"):
        # Decoded the way the client would, so the cassette is readable and replays without encoding.
        raw = httpx.Response(200, headers={"content-encoding": encoding}, content=raw).read()
    out: dict[str, Any] = {"status": response.status_code, "content_type": ctype}
    text = raw.decode("utf-8", "replace")
    if ctype.startswith("text/event-stream"):
        out["events"] = [e for e in text.replace("\r\n", "\n").split("\n\n") if e.strip()]
    else:
        out["body"] = _json_or_text(raw)
    return out


def _error(exc: BaseException) -> dict[str, str]:
    return {"type": type(exc).__name__, "message": str(exc)[:500]}


# --- replay ---------------------------------------------------------------------------------


class Cassette:
    """Recorded exchanges by request key; each key's recordings play in order, the last repeating."""

    def __init__(self, path: Path, entries: list[dict[str, Any]]) -> None:
        self.path = path
        self.entries = entries
        self._by_key: dict[str, list[dict[str, Any]]] = {}
        for e in entries:
            req = e["request"]
            self._by_key.setdefault(request_key(req["method"], req["endpoint"], req.get("body")), []).append(e)
        self._played: dict[str, int] = {}
        self._lock = threading.Lock()

    @classmethod
    def load(cls, path: str | Path) -> Cassette:
        """Read a cassette; a bad line raises ConfigError naming the file and line."""
        path = Path(path)
        entries = []
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError("SUPPORTBOT_CASSETTE", f"cannot read {path}: {exc}") from None
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                req = entry["request"]
                ok = isinstance(req["method"], str) and isinstance(req["endpoint"], str)
                ok = ok and isinstance(entry.get("response", {}), dict) and ("response" in entry or "error" in entry)
            except (ValueError, KeyError, TypeError):
                ok = False
            if not ok:
                raise ConfigError(
                    "SUPPORTBOT_CASSETTE", f"{path} line {n}: not a recorded exchange (expected request and response)"
                )
            entries.append(entry)
        return cls(path, entries)

    def take(self, key: str) -> dict[str, Any] | None:
        """The next recording for ``key``, or None when nothing was recorded for it."""
        recorded = self._by_key.get(key)
        if not recorded:
            return None
        with self._lock:
            i = self._played.get(key, 0)
            self._played[key] = i + 1
        return recorded[min(i, len(recorded) - 1)]


class ReplayTransport(httpx.AsyncBaseTransport):
    """Answers the SDK from a cassette, in process; no request leaves the machine."""

    def __init__(self, cassette: Cassette, base_url: str = REPLAY_BASE_URL) -> None:
        self.cassette = cassette
        self.base_path = httpx.URL(base_url).path

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """The recorded response for this request, or a 400 that says none was recorded."""
        raw = await request.aread()
        endpoint = endpoint_of(request.url, self.base_path)
        # Parsing and hashing grow with the prompt (a long log): off the event loop.
        body, entry = await asyncio.to_thread(self._find, request.method, endpoint, raw)
        if entry is None:
            return self._miss(body)
        error = entry.get("error")
        response = entry.get("response")
        if response is None:
            raise _exception(error or {}, request)
        if "events" in response:
            stream = _Events(response["events"], error, request)
            return httpx.Response(response["status"], headers={"content-type": response["content_type"]}, stream=stream)
        content = response.get("body")
        raw = content.encode() if isinstance(content, str) else json.dumps(content).encode()
        return httpx.Response(response["status"], headers={"content-type": response["content_type"]}, content=raw)

    def _find(self, method: str, endpoint: str, raw: bytes) -> tuple[Any, dict[str, Any] | None]:
        body = _json_or_text(raw)
        return body, self.cassette.take(request_key(method, endpoint, body))

    def _miss(self, body: Any) -> httpx.Response:
        model = body.get("model") if isinstance(body, dict) else None
        messages = body.get("messages") if isinstance(body, dict) else None
        last = _last_user_text(messages or [])
        message = (
            f"No recording in {self.cassette.path.name} matches this request (model {model}, "
            f"{len(messages or [])} messages, last: {last!r}). Replay only plays what was recorded: "
            "re-record with SUPPORTBOT_RECORD, or use SUPPORTBOT_ENGINE=offline or live."
        )
        error = {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": MISS_CODE}}
        # Not retryable: asking again cannot make a recording appear.
        return httpx.Response(400, json=error, headers={"x-should-retry": "false"})


def _last_user_text(messages: list[Any]) -> str:
    for m in reversed(messages):
        if isinstance(m, dict) and m.get("role") == "user":
            content = m.get("content")
            if isinstance(content, list):
                content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
            text = " ".join(str(content or "").split())
            return text if len(text) <= 60 else text[:57] + "..."
    return ""


def _exception(error: dict[str, Any], request: httpx.Request) -> httpx.HTTPError:
    message = f"{error.get('message', 'failed')} (replayed)"
    if error.get("type") in _TIMEOUTS:
        return httpx.ReadTimeout(message, request=request)
    if error.get("type") in ("RemoteProtocolError", "StreamClosed", "ReadError"):
        return httpx.RemoteProtocolError(message, request=request)
    return httpx.ConnectError(message, request=request)


class _Events(httpx.AsyncByteStream):
    def __init__(self, events: list[str], error: dict[str, Any] | None, request: httpx.Request) -> None:
        self.events, self.error, self.request = events, error, request

    async def __aiter__(self):
        for event in self.events:
            yield (event + "\n\n").encode("utf-8")
        if self.error:  # recorded mid-stream: the connection dropped here
            raise _exception(self.error, self.request)
