"""The OpenAI SDK client: live (Oxlo or any compatible URL) or the in-process offline engine.

One AsyncOpenAI per event loop: an httpx.AsyncClient is bound to the loop it first
ran on, and Gradio runs handlers on more than one loop (and tests make their own).
The offline engine is imported here, lazily, and only when it is chosen; so are the recording
and replay transports of ``supportbot.cassette`` (SUPPORTBOT_RECORD, SUPPORTBOT_ENGINE=replay).
What the SDK's errors mean is decided here too: how many attempts it made (``sdk_attempts``) and
the message a person can act on (``describe_api_error``).
"""

from __future__ import annotations

import asyncio
import math
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

from supportbot.config import Settings, redact
from supportbot.errors import ApiError, SupportbotError
from supportbot.routing.catalog import ModelInfo

if TYPE_CHECKING:  # the SDK costs ~0.5 s to import: loaded on the first request, not at start-up
    import openai


@dataclass(frozen=True)
class Simulation:
    """A tester's simulated trouble for one visitor's turns on the offline engine: a failure kind, a delay.

    It travels with each turn (as an argument, to a worker process too) and becomes per-request
    headers, so one visitor's simulation never touches another's requests. Made by
    ``ClientFactory.simulation``, which checks it; ``headers()`` is what the agent sends."""

    failure: str | None = None
    latency_s: float = 0.0
    fail_header: str = ""
    latency_header: str = ""

    @property
    def active(self) -> bool:
        """Whether anything is simulated."""
        return bool(self.failure) or self.latency_s > 0

    def headers(self) -> dict[str, str]:
        """The request headers the offline engine honours (empty when nothing is simulated)."""
        out = {self.fail_header: self.failure} if self.failure else {}
        if self.latency_s > 0:
            out[self.latency_header] = f"{self.latency_s:g}"
        return out

    def describe(self) -> str:
        """What the chat says about a simulated turn."""
        parts = [f"the failure **{self.failure}**"] if self.failure else []
        parts += [f"{self.latency_s:g} s of added latency per request"] if self.latency_s > 0 else []
        return "🧪 Simulated (QA tab): the offline engine answers this turn with " + " and ".join(parts) + "."


class ClientFactory:
    """Makes SDK clients for the current event loop, cached per loop.

    ``engine`` is an offline engine to talk to in process; with none and no live service
    configured, one is made from ``context_windows`` (the catalog's, model id -> tokens).
    """

    def __init__(
        self,
        settings: Settings,
        engine: Any = None,
        *,
        context_windows: Mapping[str, int] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.settings = settings
        if engine is None and transport is None and settings.engine == "replay":
            from supportbot.cassette import Cassette, ReplayTransport

            transport = ReplayTransport(Cassette.load(settings.cassette_path))
        self.transport = transport
        if engine is None and not settings.live and transport is None:
            from supportbot.engine import OfflineEngine

            # Serving visitors: keep no request bodies (a test that inspects them passes its own engine).
            engine = OfflineEngine(context_windows=context_windows, keep_requests=False)
        self.engine = engine
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, openai.AsyncOpenAI] = (
            weakref.WeakKeyDictionary()
        )

    @property
    def offline(self) -> bool:
        """True when requests never leave the process (offline engine or a test transport)."""
        return self.engine is not None or self.transport is not None

    @property
    def base_url(self) -> str:
        """Where requests go (shown in the UI; never includes the key)."""
        if self.engine is not None:
            from supportbot.engine import OFFLINE_BASE_URL

            return OFFLINE_BASE_URL
        if self.settings.engine == "replay":
            from supportbot.cassette import REPLAY_BASE_URL

            return REPLAY_BASE_URL
        return self.settings.base_url

    def simulation(self, failure: str | None, latency_s: float | None) -> Simulation:
        """A checked Simulation; SupportbotError unless the engine is the offline one, or for a bad kind
        or delay (the delay is capped by the engine's MAX_LATENCY_S)."""
        if self.engine is None:
            raise SupportbotError(
                "Simulated failures need the offline engine (no OXLO_API_KEY, SUPPORTBOT_ENGINE=offline): this app "
                "answers from a live service or a recording."
            )
        from supportbot.engine import FAIL_HEADER, FAILURE_KINDS, LATENCY_HEADER, MAX_LATENCY_S

        failure = failure or None
        if failure is not None and failure not in FAILURE_KINDS:
            raise SupportbotError(f"Unknown failure kind {str(failure)[:40]!r}; known: {', '.join(FAILURE_KINDS)}.")
        try:
            latency = float(latency_s or 0)
        except (TypeError, ValueError):
            latency = math.nan
        if not 0 <= latency <= MAX_LATENCY_S:  # also refuses NaN
            raise SupportbotError(f"Added latency must be from 0 to {MAX_LATENCY_S:g} seconds.")
        return Simulation(failure, latency, FAIL_HEADER, LATENCY_HEADER)

    def simulation_choices(self) -> tuple[tuple[str, ...], float]:
        """(failure kinds, the most added latency) a Simulation may name; none without the offline engine."""
        if self.engine is None:
            return (), 0.0
        from supportbot.engine import FAILURE_KINDS, MAX_LATENCY_S

        return FAILURE_KINDS, MAX_LATENCY_S

    def headers_for(self, simulation: Simulation | None) -> dict[str, str]:
        """The headers a turn sends for ``simulation``; SupportbotError when the engine is not the offline one."""
        if simulation is None or not simulation.active:
            return {}
        checked = self.simulation(simulation.failure, simulation.latency_s)
        return checked.headers()

    def get(self) -> openai.AsyncOpenAI:
        """The client for the running event loop."""
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            client = self._clients[loop] = self._make()
        return client

    def _make(self) -> openai.AsyncOpenAI:
        import openai

        s = self.settings
        timeout = httpx.Timeout(s.request_timeout, connect=min(10.0, s.request_timeout))
        transport = self.engine.transport() if self.engine is not None else self.transport
        if s.record_path is not None:
            transport = self._recording(transport)
        if transport is not None:
            http = httpx.AsyncClient(transport=transport, timeout=timeout)
            # The key never goes to the offline engine or a replay.
            sends_key = s.api_key and self.engine is None and s.engine != "replay"
            key = s.api_key.get_secret_value() if sends_key else "offline"
            return openai.AsyncOpenAI(
                base_url=self.base_url, api_key=key, http_client=http, max_retries=s.max_retries, timeout=timeout
            )
        # Loopback servers need no certificate bundle; skipping it saves ~10 ms per client.
        http = httpx.AsyncClient(
            timeout=timeout,
            limits=httpx.Limits(max_connections=1000, max_keepalive_connections=100),
            verify=not s.base_url.startswith("http://"),
        )
        return openai.AsyncOpenAI(
            base_url=s.base_url,
            api_key=s.api_key.get_secret_value() if s.api_key else "none",
            http_client=http,
            max_retries=s.max_retries,
            timeout=timeout,
        )

    def _recording(self, transport: httpx.AsyncBaseTransport | None) -> httpx.AsyncBaseTransport:
        """``transport`` (or the network's) wrapped to append every exchange to SUPPORTBOT_RECORD."""
        from supportbot.cassette import RecordingTransport

        s = self.settings
        inner = transport or httpx.AsyncHTTPTransport(
            verify=not s.base_url.startswith("http://"),
            limits=httpx.Limits(max_connections=1000, max_keepalive_connections=100),
        )
        secret = s.api_key.get_secret_value() if s.api_key else None
        return RecordingTransport(inner, s.record_path, base_url=self.base_url, secret=secret)

    async def list_models(self) -> list[str]:
        """Ids the service lists at GET /models; ApiError when it cannot be asked."""
        import openai

        try:
            page = await self.get().models.list()
        except openai.OpenAIError as exc:
            key = self.settings.api_key.get_secret_value() if self.settings.api_key else None
            detail = redact(str(exc), key)
            raise ApiError(
                "models", f"could not list models at {self.base_url}: {type(exc).__name__}: {detail}"
            ) from None
        return [m.id for m in page.data]


def sdk_attempts(exc: openai.APIError, max_retries: int) -> int:
    """How many attempts the SDK made before raising ``exc``, by the SDK's own retry rule:
    timeouts, connection errors, 408, 409, 429 and 5xx are retried unless the server says not to."""
    import openai

    if isinstance(exc, openai.APIConnectionError):  # timeouts included
        return 1 + max_retries
    response = getattr(exc, "response", None)
    if response is None:
        return 1
    if response.headers.get("x-should-retry") == "false":
        return 1
    retryable = (
        response.headers.get("x-should-retry") == "true"
        or response.status_code in (408, 409, 429)
        or response.status_code >= 500
    )
    return 1 + max_retries if retryable else 1


# --- what the SDK's errors mean -------------------------------------------------------------------


def describe_api_error(exc: openai.APIError, model: ModelInfo, base_url: str, settings: Settings) -> ApiError:
    """Turn an SDK error into an ApiError whose message says what to do."""
    secret = settings.api_key.get_secret_value() if settings.api_key else None
    error = _describe(exc, model, base_url, settings, _server_message(exc, secret))
    # Every part is already masked; the whole message once more, in case the key hides elsewhere
    # (a base URL, a connection error's cause).
    return ApiError(error.kind, redact(str(error), secret), error.status)


def _describe(exc: openai.APIError, model: ModelInfo, base_url: str, settings: Settings, detail: str) -> ApiError:
    import openai

    secret = settings.api_key.get_secret_value() if settings.api_key else None
    status = getattr(exc, "status_code", None)
    n = settings.max_retries + 1
    attempts = f"{n} attempt{'s' if n != 1 else ''}"
    if isinstance(exc, openai.APITimeoutError):
        return ApiError(
            "timeout",
            f"No answer from {base_url} within {settings.request_timeout:g} s ({attempts}). The service may be busy: "
            "try again, or raise SUPPORTBOT_REQUEST_TIMEOUT.",
        )
    if isinstance(exc, openai.APIConnectionError):
        return ApiError(
            "connection",
            f"Could not reach {base_url} ({attempts}): {redact(str(exc.__cause__ or exc), secret)}. Check "
            "OXLO_BASE_URL and your network.",
        )
    if isinstance(exc, openai.AuthenticationError):
        return ApiError(
            "auth",
            f"The API key was rejected (401). Check OXLO_API_KEY (or the Space secret) and restart. {detail}",
            status,
        )
    if isinstance(exc, openai.PermissionDeniedError):
        plan = settings.plan.title()
        needs = (
            f"Oxlo does not publish {model.name}'s tier"
            if model.tier == "unknown"
            else f"{model.name} needs the {model.tier.title()} tier"
        )
        return ApiError(
            "forbidden",
            f"Not allowed (403) on your {plan} plan (SUPPORTBOT_PLAN): {needs}, or a plan limit was reached. Choose "
            f"a model your plan includes (Auto routes only to those) or upgrade. {detail}",
            status,
        )
    if isinstance(exc, openai.NotFoundError):
        return ApiError(
            "not_found",
            f"Model {model.id!r} was not found at {base_url} (404). Choose another model; ids marked unconfirmed in "
            f"the catalog may not be served. {detail}",
            status,
        )
    if isinstance(exc, openai.RateLimitError):
        return ApiError(
            "rate_limit", f"Rate limit reached (429) after {attempts}. Wait a moment, then send again. {detail}", status
        )
    if isinstance(exc, openai.BadRequestError):
        code = str(getattr(exc, "code", "") or "")
        if "context" in code or "context length" in detail.lower() or "maximum context" in detail.lower():
            return ApiError(
                "context_length",
                f"The prompt is longer than {model.name}'s context window ({model.context_window:,} tokens). Attach "
                f"a shorter log, pick a long-context model, or start a new conversation. {detail}",
                status,
            )
        return ApiError("bad_request", f"The service rejected the request (400): {detail}", status)
    if isinstance(exc, openai.APIStatusError) and status and status >= 500:
        return ApiError(
            "server",
            f"The model service had trouble ({status}) after {attempts}: its workers may be busy or restarting. Try "
            f"again shortly or choose another model. {detail}",
            status,
        )
    return ApiError(
        "server" if status is None else "bad_request",
        f"The model service failed ({status or type(exc).__name__}): {detail or redact(str(exc), secret)[:300]}",
        status,
    )


def _server_message(exc: openai.APIError, secret: str | None) -> str:
    """The server's own message, masked, then cut to 300 characters (masked first: a cut can split the key)."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        err = body.get("error")
        msg = err.get("message") if isinstance(err, dict) else body.get("message")
        if msg:
            return f"Server said: {redact(str(msg), secret)[:300]}"
    return ""
