"""Coalesce a turn's events so the page is redrawn once per batch, not once per delta."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

_END = object()


FRAME_S = 0.04  # a page redrawn 25 times a second reads as live; more frames only cost the server


class Batch(list):
    """One redraw's events, in order. ``last``: the stream ended right after them, so a handler whose
    closing redraw follows the loop can skip this one (it would draw the same thing twice)."""

    last: bool = False


async def batches(events: AsyncIterator[Any], frame_s: float = 0.0) -> AsyncIterator[Batch]:
    """Yield lists of everything that arrived while the previous batch was being rendered.

    With ``frame_s``, the first batch goes out at once and every later one gathers what arrives
    within a frame of its first event: a burst after a wait (a tool call, its result and the next
    request) is one redraw instead of two, and redraws are at least a frame apart.

    Every yield of a Gradio handler costs a render, a postprocess and a send on the
    event loop; one per text delta saturates the loop at a few dozen sessions. Reading
    the turn in a task keeps one session as live as before, and lets a busy server
    coalesce deltas by itself. Cancelling the consumer cancels the reader too.
    """
    queue: asyncio.Queue[Any] = asyncio.Queue()
    finished = asyncio.Event()

    async def pump() -> None:
        try:
            async for event in events:
                queue.put_nowait(event)
        except Exception as exc:  # handed over to the consumer, which re-raises it
            queue.put_nowait(exc)
        queue.put_nowait(_END)
        finished.set()

    task = asyncio.create_task(pump())
    sent = False
    try:
        while True:
            batch = [await queue.get()]
            if sent and frame_s > 0 and batch[0] is not _END and not finished.is_set():
                # Gather what else arrives within this frame; the stream's end does not wait for it.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(finished.wait(), frame_s)
            while not queue.empty():
                batch.append(queue.get_nowait())
            ended = batch[-1] is _END
            items = [e for e in batch if e is not _END]
            failure = next((e for e in items if isinstance(e, Exception)), None)
            ready = Batch(e for e in items if not isinstance(e, Exception))
            ready.last = ended and failure is None
            if ready:
                yield ready
                sent = True
            if failure is not None:
                raise failure
            if ended:
                return
    finally:
        if not task.done():
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass  # we cancelled it: its turn records the stop itself (see TurnRunner.run)
