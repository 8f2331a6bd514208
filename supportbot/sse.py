"""A streamed chat completion read as JSON: the chunks of the SDK's raw response, without a model per chunk.

The SDK's own stream builds a model object for every chunk; reading the JSON is about a sixth of a
turn's CPU less, and the agent reads only a few fields of each. What the SDK's stream does is kept:

* lines end at CR, LF or CRLF only, split on bytes (JSON may hold U+2028 raw, which ``str.splitlines``
  would cut in two);
* an event carrying ``error`` raises ``openai.APIError``; a read timeout mid-answer raises
  ``openai.APITimeoutError`` and a dropped connection ``openai.APIConnectionError``;
* after ``[DONE]`` the rest of an HTTP/1.1 body is drained for at most 0.1 s, so the connection is
  reused, and never waited for longer (a server that keeps sending after it cannot hold the turn).

What the service may not do: send an event that is not a JSON object, nested past Python's recursion
limit, or a line over ``MAX_EVENT_BYTES``; that is ``ApiError("protocol")``, a broken stream, which never
counts against the model the way a server error does.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx

from supportbot.errors import ApiError

# A chunk is a few hundred bytes; the largest honest one (a whole tool call's arguments) is bounded by
# the request's max_tokens. Beyond this, a line or event is a hostile or broken service.
MAX_EVENT_BYTES = 4 * 2**20
DRAIN_S = 0.1  # as the SDK: how long the rest of a body after [DONE] is read for connection reuse

_LINE_END = re.compile(rb"\r\n|\r|\n")  # three fixed alternatives: linear in the block


class _Lines:
    """Bytes in, complete lines out; each block is scanned once, however long a line grows."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []  # the line in progress
        self._size = 0
        self._after_cr = False  # the last block ended in CR: a leading LF is the rest of that CRLF

    def feed(self, block: bytes) -> list[bytes]:
        if self._after_cr and block.startswith(b"\n"):
            block = block[1:]
        self._after_cr = block.endswith(b"\r")
        pieces = _LINE_END.split(block)
        lines: list[bytes] = []
        if len(pieces) > 1:
            lines.append(b"".join([*self._parts, pieces[0]]))
            lines.extend(pieces[1:-1])
            self._parts, self._size = [], 0
            rest = pieces[-1]
        else:
            rest = pieces[0]
        if rest:
            self._parts.append(rest)
            self._size += len(rest)
        if self._size > MAX_EVENT_BYTES or any(len(line) > MAX_EVENT_BYTES for line in lines):
            raise _broken(f"a line over {MAX_EVENT_BYTES // 2**20} MB")
        return lines

    def rest(self) -> bytes:
        return b"".join(self._parts)


def _broken(what: str) -> ApiError:
    return ApiError(
        "protocol",
        f"The service sent a broken answer stream ({what}). What arrived is shown; send the message again.",
    )


async def stream_chunks(response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    """The chunks of a streamed chat completion, as JSON objects, from the open response the SDK returned
    (``with_raw_response``), until ``[DONE]`` or the end of the body. The response is closed either way."""
    import openai

    lines, data, size = _Lines(), [], 0

    def event() -> dict[str, Any] | None:
        payload = "\n".join(data)
        data.clear()
        if payload.startswith("[DONE]"):
            return None
        try:
            chunk = json.loads(payload)
        except (ValueError, RecursionError):
            raise _broken("an event that is not JSON") from None
        if not isinstance(chunk, dict):
            raise _broken("an event that is not a JSON object")
        if error := chunk.get("error"):
            message = error.get("message") if isinstance(error, dict) else None
            raise openai.APIError(
                message if isinstance(message, str) and message else "An error occurred during streaming",
                response.request,
                body=error,
            )
        return chunk

    blocks = response.aiter_bytes()
    try:
        try:
            async for block in blocks:
                for raw in lines.feed(block):
                    line = raw.decode("utf-8", errors="replace")
                    if line.startswith("data:"):
                        data.append(line[6:] if line.startswith("data: ") else line[5:])
                        size += len(raw)
                        if size > MAX_EVENT_BYTES:
                            raise _broken(f"an event over {MAX_EVENT_BYTES // 2**20} MB")
                    elif not line and data:  # a blank line ends an event; event:, id:, comments carry nothing
                        size = 0
                        if (chunk := event()) is None:
                            if response.http_version == "HTTP/1.1":
                                await _drain(blocks)
                            return
                        yield chunk
        except httpx.TimeoutException:
            raise openai.APITimeoutError(request=response.request) from None
        except (httpx.TransportError, OSError, anyio.EndOfStream) as exc:  # OSError: ssl.SSLError too
            raise openai.APIConnectionError(message=str(exc) or type(exc).__name__, request=response.request) from None
        if (tail := lines.rest()).startswith(b"data:"):  # a last event without its line end
            data.append(tail.decode("utf-8", errors="replace")[5:].removeprefix(" "))
        if data and (chunk := event()) is not None:  # ... or without its blank line
            yield chunk
    finally:
        await response.aclose()


async def _drain(blocks: AsyncIterator[bytes]) -> None:
    """Read what follows [DONE] for at most DRAIN_S; whatever happens meanwhile, the answer is complete."""
    try:
        async with asyncio.timeout(DRAIN_S):
            async for _ in blocks:
                pass
    except (TimeoutError, httpx.HTTPError, OSError, anyio.EndOfStream):
        pass
