"""The OpenAI SDK client: live (Oxlo or any compatible URL) or the in-process offline engine.

One AsyncOpenAI per event loop: an httpx.AsyncClient is bound to the loop it first
ran on, and Gradio runs handlers on more than one loop (and tests make their own).
"""

from __future__ import annotations

import asyncio
import weakref
from contextvars import ContextVar
import httpx
import openai

from supportbot.config import Settings
from supportbot.engine import OFFLINE_BASE_URL, OfflineEngine


# The HTTP statuses of every attempt the SDK makes for the current request (its retries included),
# collected per task so concurrent sessions never mix. The agent opens a list before each request.
ATTEMPTS: ContextVar[list[int] | None] = ContextVar("supportbot_attempts", default=None)


async def _record_attempt(response: httpx.Response) -> None:
    attempts = ATTEMPTS.get()
    if attempts is not None:
        attempts.append(response.status_code)


HOOKS = {"response": [_record_attempt]}


class ClientFactory:
    """Makes SDK clients for the current event loop, cached per loop."""

    def __init__(self, settings: Settings, engine: OfflineEngine | None = None) -> None:
        self.settings = settings
        self.engine = engine if engine is not None or settings.live else OfflineEngine()
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, openai.AsyncOpenAI] = weakref.WeakKeyDictionary()

    @property
    def base_url(self) -> str:
        """Where requests go (shown in the UI; never includes the key)."""
        return self.settings.base_url if self.engine is None else OFFLINE_BASE_URL

    def get(self) -> openai.AsyncOpenAI:
        """The client for the running event loop."""
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            client = self._clients[loop] = self._make()
        return client

    def _make(self) -> openai.AsyncOpenAI:
        s = self.settings
        timeout = httpx.Timeout(s.request_timeout, connect=min(10.0, s.request_timeout))
        if self.engine is not None:
            http = httpx.AsyncClient(transport=self.engine.transport(), timeout=timeout, event_hooks=HOOKS)
            return openai.AsyncOpenAI(base_url=OFFLINE_BASE_URL, api_key="offline", http_client=http, max_retries=s.max_retries, timeout=timeout)
        # Loopback servers need no certificate bundle; skipping it saves ~10 ms per client.
        http = httpx.AsyncClient(timeout=timeout, limits=httpx.Limits(max_connections=1000, max_keepalive_connections=100), event_hooks=HOOKS,
                                 verify=not s.base_url.startswith("http://"))
        return openai.AsyncOpenAI(base_url=s.base_url, api_key=s.api_key.get_secret_value() if s.api_key else "none",
                                  http_client=http, max_retries=s.max_retries, timeout=timeout)

    async def list_models(self) -> list[str]:
        """Ids the service lists at GET /models."""
        page = await self.get().models.list()
        return [m.id for m in page.data]

