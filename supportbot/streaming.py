"""Coalesce a turn's events so the page is redrawn once per batch, not once per delta."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

_END = object()


async def batches(events: AsyncIterator[Any]) -> AsyncIterator[list[Any]]:
    """Yield lists of everything that arrived while the previous batch was being rendered.

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
    try:
        while True:
            batch = [await queue.get()]
            while not queue.empty():
                batch.append(queue.get_nowait())
            ended = batch[-1] is _END
            items = [e for e in batch if e is not _END]
            failure = next((e for e in items if isinstance(e, Exception)), None)
            ready = [e for e in items if not isinstance(e, Exception)]
            if ready:
                yield ready
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
