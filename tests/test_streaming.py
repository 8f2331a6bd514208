"""batches(): a turn's events regrouped into redraws, as the chat handlers consume them."""

from __future__ import annotations

import asyncio

import pytest

from supportbot.streaming import batches


async def _timed_events(delays: list[float], fail_at: int | None = None):
    """Events 0..n-1, each after its delay; with ``fail_at``, that one raises instead."""
    for i, delay in enumerate(delays):
        await asyncio.sleep(delay)
        if i == fail_at:
            raise RuntimeError("upstream broke")
        yield i


async def _collect(events, frame_s: float) -> list[tuple[float, list[int]]]:
    loop = asyncio.get_running_loop()
    start = loop.time()
    return [(loop.time() - start, batch) async for batch in batches(events, frame_s)]


def test_events_within_a_frame_arrive_as_one_redraw_and_the_first_is_not_held_back() -> None:
    # Ten events 5 ms apart, and one more later: with a 100 ms frame, the first goes out alone at once,
    # the next nine together a frame after the second, the last when the stream ends.
    out = asyncio.run(_collect(_timed_events([0.0] + [0.005] * 9 + [0.3]), frame_s=0.1))
    assert [b for _, b in out] == [[0], list(range(1, 10)), [10]]  # nothing lost, nothing reordered
    assert out[0][0] < 0.05
    assert out[1][0] >= 0.1  # the second redraw waited for its frame


def test_without_a_frame_each_burst_goes_out_as_it_arrives() -> None:
    out = asyncio.run(_collect(_timed_events([0.0, 0.03, 0.03, 0.03]), frame_s=0.0))
    assert [b for _, b in out] == [[0], [1], [2], [3]]


def test_a_failure_is_raised_after_the_events_before_it_were_delivered() -> None:
    async def run() -> list[list[int]]:
        seen: list[list[int]] = []
        with pytest.raises(RuntimeError, match="upstream broke"):
            async for batch in batches(_timed_events([0.0, 0.0, 0.01], fail_at=2), 0.05):
                seen.append(batch)
        return seen

    assert sum(asyncio.run(run()), []) == [0, 1]


def test_stopping_the_consumer_stops_the_reader() -> None:
    finished = asyncio.Event()

    async def endless():
        try:
            while True:
                await asyncio.sleep(0.001)
                yield "delta"
        finally:
            finished.set()

    async def run() -> bool:
        consumer = asyncio.create_task(_drain(batches(endless(), 0.01)))
        await asyncio.sleep(0.05)
        consumer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await consumer
        await asyncio.wait_for(finished.wait(), 1.0)
        return finished.is_set()

    async def _drain(it) -> None:
        async for _ in it:
            pass

    assert asyncio.run(run())


def test_a_burst_after_a_wait_is_one_redraw() -> None:
    # A tool call, its result and the next round arrive a few ms apart after a one-frame wait:
    # the first of them does not go out alone.
    out = asyncio.run(_collect(_timed_events([0.0, 0.15, 0.005, 0.005]), frame_s=0.05))
    assert [b for _, b in out] == [[0], [1, 2, 3]]


def test_the_last_batch_says_so_only_when_the_stream_ended_within_its_frame() -> None:
    async def ending_late():
        async for event in _timed_events([0.0, 0.1, 0.005]):
            yield event
        await asyncio.sleep(0.2)  # the turn still saves after its last event

    ended_within = asyncio.run(_collect(_timed_events([0.0, 0.1, 0.005]), frame_s=0.05))
    ended_late = asyncio.run(_collect(ending_late(), frame_s=0.05))
    assert [(b, b.last) for _, b in ended_within] == [([0], False), ([1, 2], True)]
    assert [(b, b.last) for _, b in ended_late] == [([0], False), ([1, 2], False)]


def test_a_batch_before_a_failure_is_not_called_the_last() -> None:
    async def run() -> list[bool]:
        seen: list[bool] = []
        with pytest.raises(RuntimeError):
            async for batch in batches(_timed_events([0.0, 0.0, 0.0], fail_at=2), 0.05):
                seen.append(batch.last)
        return seen

    seen = asyncio.run(run())
    assert seen and not any(seen)  # the events before the failure were delivered, none as the last


def test_the_end_of_the_stream_does_not_wait_for_the_frame() -> None:
    # The last events arrive, then the stream ends 10 ms later: with a 200 ms frame, the last redraw
    # goes out when the stream ends, not a whole frame after its first event.
    out = asyncio.run(_collect(_timed_events([0.0, 0.05, 0.01]), frame_s=0.2))
    assert [(b, b.last) for _, b in out] == [([0], False), ([1, 2], True)]
    assert out[1][0] < 0.15
