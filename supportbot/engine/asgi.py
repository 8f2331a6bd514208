"""The engine as a Starlette app, for the loopback server and any ASGI host."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.routing import Route

from supportbot.engine.protocol import Outcome
from supportbot.engine.transport import HANG_S

if TYPE_CHECKING:
    from supportbot.engine.core import OfflineEngine


class OutcomeResponse:
    """An ASGI response that replays an Outcome, including hangs and dropped connections."""

    def __init__(self, outcome: Outcome) -> None:
        self.outcome = outcome

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        out = self.outcome
        if out.hang:
            await _until_disconnect(receive, HANG_S)
            return
        if out.latency_s:
            await asyncio.sleep(out.latency_s)
        headers = [(k.encode(), v.encode()) for k, v in out.headers.items()]
        if not out.streaming:
            headers.append((b"content-length", str(len(out.body)).encode()))
            await send({"type": "http.response.start", "status": out.status, "headers": headers})
            await send({"type": "http.response.body", "body": out.body})
            return
        await send({"type": "http.response.start", "status": out.status, "headers": headers})
        for i, event in enumerate(out.events or ()):
            if i and out.event_delay_s:
                await asyncio.sleep(out.event_delay_s)
            await send({"type": "http.response.body", "body": event, "more_body": True})
        if out.drop:
            # Returning without the final body message makes the server close the
            # connection mid-response: the client sees an incomplete chunked body.
            return
        await send({"type": "http.response.body", "body": b""})


async def _until_disconnect(receive: Any, limit_s: float) -> None:
    """Wait until the client goes away (or ``limit_s`` passes): an injected timeout."""

    async def watch() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    try:
        await asyncio.wait_for(watch(), timeout=limit_s)
    except TimeoutError:
        return


def build_app(engine: OfflineEngine) -> Starlette:
    """A Starlette app serving the engine under /v1."""

    async def endpoint(request: Request) -> OutcomeResponse:
        body = await request.body()
        # Rules and log analysis are CPU work: keep them off the event loop.
        outcome = await run_in_threadpool(engine.handle, request.method, request.url.path, request.headers, body)
        return OutcomeResponse(outcome)

    routes = [
        Route("/v1/models", endpoint, methods=["GET"]),
        Route("/v1/models/{model_id:path}", endpoint, methods=["GET"]),
        Route("/v1/chat/completions", endpoint, methods=["POST", "GET"]),
    ]
    return Starlette(routes=routes)
