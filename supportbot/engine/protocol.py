"""The OpenAI protocol's HTTP side: responses as Outcomes, error bodies and injected failures.

Everything here is pure: an :class:`Outcome` (status, headers and either a JSON body or a
list of SSE events) describes a response. The in-process transport and the Starlette app
only replay an Outcome, so both paths behave the same. Request validation lives in
``engine.validation``; completion bodies and SSE streams in ``engine.completions``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

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
