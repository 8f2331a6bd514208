"""An in-process httpx transport: the SDK talks to the engine without a socket.

The engine's work runs in a worker thread, as a real server's would run elsewhere: the event
loop the SDK runs on keeps serving other requests meanwhile. Network behaviours are
reproduced the way httpx reports them on a real socket:
an injected timeout waits for the request's read timeout and raises
``httpx.ReadTimeout``; a dropped connection raises ``httpx.RemoteProtocolError``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING

import httpx

from supportbot.engine.protocol import Outcome

if TYPE_CHECKING:
    from supportbot.engine.core import OfflineEngine

# How long an injected timeout hangs when the client set no read timeout.
HANG_S = 3600.0
_DROPPED = "peer closed connection without sending complete message body (incomplete chunked read)"


class EngineTransport(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """Serves an OfflineEngine to httpx.Client and httpx.AsyncClient alike."""

    def __init__(self, engine: OfflineEngine) -> None:
        self.engine = engine

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Answer a request from a sync client."""
        outcome = self.engine.handle(request.method, request.url.path, request.headers, request.read())
        if outcome.hang:
            self.engine.closing.wait(_read_timeout(request))
            raise httpx.ReadTimeout("timed out (injected by the offline demo engine)", request=request)
        if outcome.latency_s:
            time.sleep(outcome.latency_s)
        stream = _SyncEvents(outcome, request) if outcome.streaming else None
        return _response(outcome, stream)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Answer a request from an async client; the engine's work runs in a worker thread."""
        body = await request.aread()
        # The rules read the whole prompt (a pasted log, a long history): work that grows with the
        # input, so it never runs on the event loop that serves every other visitor.
        outcome = await asyncio.to_thread(self.engine.handle, request.method, request.url.path, request.headers, body)
        if outcome.hang:
            await asyncio.sleep(_read_timeout(request))  # cancellable, like a real socket read
            raise httpx.ReadTimeout("timed out (injected by the offline demo engine)", request=request)
        if outcome.latency_s:
            await asyncio.sleep(outcome.latency_s)
        stream = _AsyncEvents(outcome, request) if outcome.streaming else None
        return _response(outcome, stream)


def _read_timeout(request: httpx.Request) -> float:
    timeout = (request.extensions.get("timeout") or {}).get("read")
    return float(timeout) if timeout is not None else HANG_S


def _response(outcome: Outcome, stream: httpx.SyncByteStream | httpx.AsyncByteStream | None) -> httpx.Response:
    if stream is None:
        return httpx.Response(outcome.status, headers=outcome.headers, content=outcome.body)
    return httpx.Response(outcome.status, headers=outcome.headers, stream=stream)


class _SyncEvents(httpx.SyncByteStream):
    def __init__(self, outcome: Outcome, request: httpx.Request) -> None:
        self.outcome, self.request = outcome, request

    def __iter__(self) -> Iterator[bytes]:
        for i, event in enumerate(self.outcome.events or ()):
            if i and self.outcome.event_delay_s:
                time.sleep(self.outcome.event_delay_s)
            yield event
        if self.outcome.drop:
            raise httpx.RemoteProtocolError(_DROPPED, request=self.request)


class _AsyncEvents(httpx.AsyncByteStream):
    def __init__(self, outcome: Outcome, request: httpx.Request) -> None:
        self.outcome, self.request = outcome, request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for i, event in enumerate(self.outcome.events or ()):
            if i and self.outcome.event_delay_s:
                await asyncio.sleep(self.outcome.event_delay_s)
            yield event
        if self.outcome.drop:
            raise httpx.RemoteProtocolError(_DROPPED, request=self.request)
