"""A hostile visitor's HTTP client: calls any event of a launched app by ``fn_index`` on the real queue.

This is what the browser's JS client does (``POST /gradio_api/queue/join`` then the SSE stream
``/gradio_api/queue/data``), so "private" events are reachable too; ``gradio_client`` refuses them.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

FILE_META = {"_type": "gradio.FileData"}


@dataclass
class Outcome:
    """What one event sent back: its last output (or error) and the toasts (gr.Warning/Info) on the way."""

    ok: bool
    data: list[Any] = field(default_factory=list)
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    status: int = 200


class Visitor:
    """One browser session (a ``session_hash``) against ``url``."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.session_hash = secrets.token_hex(10)
        self.http = httpx.Client(base_url=url, timeout=60)
        self.config = self.http.get("config").json()

    def close(self) -> None:
        """Close the HTTP client."""
        self.http.close()

    def fn_index(self, api_name: str) -> int:
        """The id of the event whose api_name (public or not) is ``api_name``."""
        return next(d["id"] for d in self.config["dependencies"] if d["api_name"] == api_name)

    def upload(self, path: Path) -> dict[str, Any]:
        """Upload a file as the page does; returns the FileData an event takes."""
        with path.open("rb") as fh:
            response = self.http.post("gradio_api/upload", files={"files": (path.name, fh)})
        response.raise_for_status()
        return {"path": response.json()[0], "orig_name": path.name, "meta": FILE_META}

    def file_status(self, path: str | Path) -> int:
        """The HTTP status of fetching ``path`` through Gradio's file route."""
        return self.http.get(f"gradio_api/file={path}").status_code

    def call(self, fn: int | str, data: list[Any], query: str = "") -> Outcome:
        """Run event ``fn`` (an id, or an api_name) with raw ``data`` and wait for it to finish."""
        index = fn if isinstance(fn, int) else self.fn_index(fn)
        wanted = len(next(d["inputs"] for d in self.config["dependencies"] if d["id"] == index))
        if len(data) != wanted:  # Gradio would refuse it before the handler: the caller would test nothing
            raise ValueError(f"event {fn!r} takes {wanted} inputs, {len(data)} given")
        body = {"data": data, "fn_index": index, "session_hash": self.session_hash, "event_data": None}
        joined = self.http.post(f"gradio_api/queue/join{query}", json=body)
        if joined.status_code != 200:
            return Outcome(False, error=joined.text, status=joined.status_code)
        warnings: list[str] = []
        last: dict[str, Any] = {}
        with self.http.stream("GET", "gradio_api/queue/data", params={"session_hash": self.session_hash}) as sse:
            for line in sse.iter_lines():
                if not line.startswith("data:"):
                    continue
                message = json.loads(line[5:])
                if message.get("msg") == "log":
                    warnings.append(message.get("log", ""))
                elif message.get("msg") in ("process_generating", "process_completed") and message.get("output"):
                    last = message
                if message.get("msg") == "process_completed":
                    break
        output = last.get("output", {})
        if last.get("success"):
            return Outcome(True, data=output.get("data", []), warnings=warnings)
        return Outcome(False, error=str(output.get("error")), warnings=warnings)
