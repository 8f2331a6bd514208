"""A small reverse proxy for bench/replicas.py: round robin over replicas, HTTP and SSE streamed both ways.

    python bench/proxy.py PORT UPSTREAM_URL [UPSTREAM_URL ...]

All requests of one Gradio session (its ``session_hash``: in the query, the heartbeat path or a
JSON body) go to one replica, as Gradio's queue needs; a visitor's *next* session (a new
``session_hash`` with the same first X-Forwarded-For entry) goes to the other replica than its
last, so sessions are never sticky across turns. Requests without a session go round robin.
As a trusted proxy it appends the peer's address to X-Forwarded-For. ``GET /__proxy__/stats``
says how many sessions and requests each replica got and how often a visitor's next session
changed replica.
"""

from __future__ import annotations

import asyncio
import json
import sys
from urllib.parse import parse_qs

import httpx

_HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"}
STATS_PATH = "/__proxy__/stats"


class Proxy:
    """A small reverse proxy (ASGI): streams HTTP and SSE both ways; one replica per Gradio session."""

    def __init__(self, upstreams: list[str]) -> None:
        self.upstreams = [u.rstrip("/") for u in upstreams]
        self.sessions: dict[str, int] = {}  # Gradio session_hash -> replica
        self.last: dict[str, int] = {}  # visitor -> the replica of its last new session
        self.stats = {"requests": [0] * len(upstreams), "sessions": [0] * len(upstreams), "switched": 0, "kept": 0}
        self._next = 0
        # No keep-alive upstream: a connection the replica closes as idle while a request is on its way
        # fails that request (httpx does not resend it); a new loopback connection costs ~0.1 ms.
        self.http = httpx.AsyncClient(
            timeout=httpx.Timeout(None, connect=10),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=0),
        )

    def replica(self, session: str | None, visitor: str) -> int:
        """The replica of a known session; a new one goes to the other replica than the visitor's last."""
        if session is None:
            self._next = (self._next + 1) % len(self.upstreams)
            return self._next
        if session not in self.sessions:
            last = self.last.get(visitor)
            chosen = self._next if last is None else (last + 1) % len(self.upstreams)
            self._next = (self._next + 1) % len(self.upstreams)
            if last is not None:
                self.stats["switched" if chosen != last else "kept"] += 1
            self.sessions[session], self.last[visitor] = chosen, chosen
            self.stats["sessions"][chosen] += 1
        return self.sessions[session]

    @staticmethod
    def session_of(path: str, query: str, body: bytes) -> str | None:
        """The Gradio session a request belongs to: in the query, the heartbeat path, or a JSON body."""
        if found := parse_qs(query).get("session_hash"):
            return found[0]
        if "/heartbeat/" in path:
            return path.rsplit("/", 1)[1]
        if body.startswith(b"{"):
            try:
                value = json.loads(body).get("session_hash")
            except (ValueError, AttributeError):
                return None
            return value if isinstance(value, str) else None
        return None

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await self.http.aclose()
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if scope["path"] == STATS_PATH:
            payload = json.dumps(self.stats).encode()
            await send(
                {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]}
            )
            await send({"type": "http.response.body", "body": payload})
            return
        headers = [(k.decode(), v.decode()) for k, v in scope["headers"] if k.decode().lower() not in _HOP_BY_HOP]
        forwarded = next((v for k, v in headers if k.lower() == "x-forwarded-for"), "")
        visitor = forwarded.split(",")[0].strip() or scope["client"][0]
        # A trusted proxy appends the address it saw (the app reads hops from the right).
        headers = [(k, v) for k, v in headers if k.lower() not in ("x-forwarded-for", "content-length")]
        headers.append(("x-forwarded-for", f"{forwarded}, {scope['client'][0]}" if forwarded else scope["client"][0]))
        query = scope["query_string"].decode()
        index = self.replica(self.session_of(scope["path"], query, body), visitor)
        self.stats["requests"][index] += 1
        path = scope.get("raw_path") or scope["path"].encode()
        url = self.upstreams[index] + path.decode() + (f"?{query}" if query else "")
        request = self.http.build_request(scope["method"], url, headers=headers, content=body)
        response = await self.http.send(request, stream=True)
        try:
            out = [(k.encode(), v.encode()) for k, v in response.headers.multi_items() if k.lower() not in _HOP_BY_HOP]
            await send({"type": "http.response.start", "status": response.status_code, "headers": out})

            async def pump() -> None:
                async for chunk in response.aiter_raw():  # as it arrives: SSE events are not held back
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await send({"type": "http.response.body", "body": b""})

            async def disconnected() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass

            tasks = {asyncio.create_task(pump()), asyncio.create_task(disconnected())}
            done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
            for task in done:
                task.result()
        finally:
            await response.aclose()


def serve_proxy(port: int, upstreams: list[str]) -> None:
    """Run the proxy on 127.0.0.1:port until killed."""
    import uvicorn

    uvicorn.run(Proxy(upstreams), host="127.0.0.1", port=port, log_level="warning", lifespan="on")


if __name__ == "__main__":
    serve_proxy(int(sys.argv[1]), sys.argv[2:])
