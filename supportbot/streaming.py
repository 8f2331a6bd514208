"""Coalesce a turn's events so the page is redrawn once per batch, not once per delta."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

_END = object()


FRAME_S = 0.04  # a page redrawn 25 times a second reads as live; more frames only cost the server


async def batches(events: AsyncIterator[Any], frame_s: float = 0.0) -> AsyncIterator[list[Any]]:
    """Yield lists of everything that arrived while the previous batch was being rendered.

    With ``frame_s``, batches are at least that far apart (the first is not held back): a fast stream
    then costs a redraw per frame instead of one per burst.

    Every yield of a Gradio handler costs a render, a postprocess and a send on the
    event loop; one per text delta saturates the loop at a few dozen sessions. Reading
    the turn in a task keeps one session as live as before, and lets a busy server
    coalesce deltas by itself. Cancelling the consumer cancels the reader too.
    """
    queue: asyncio.Queue[Any] = asyncio.Queue()

    async def pump() -> None:
        try:
            async for event in events:
                queue.put_nowait(event)
        except Exception as exc:  # handed over to the consumer, which re-raises it
            queue.put_nowait(exc)
        queue.put_nowait(_END)

    task = asyncio.create_task(pump())
    loop = asyncio.get_running_loop()
    last = -frame_s
    try:
        while True:
            batch = [await queue.get()]
            if (wait := last + frame_s - loop.time()) > 0 and batch[0] is not _END:
                await asyncio.sleep(wait)  # gather what else arrives within this frame
            while not queue.empty():
                batch.append(queue.get_nowait())
            ended = batch[-1] is _END
            items = [e for e in batch if e is not _END]
            failure = next((e for e in items if isinstance(e, Exception)), None)
            ready = [e for e in items if not isinstance(e, Exception)]
            if ready:
                yield ready
                last = loop.time()
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
