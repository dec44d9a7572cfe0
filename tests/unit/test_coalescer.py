"""core.jobs.batching.Coalescer: concurrent calls share one flush; results and errors go back
to each."""

from __future__ import annotations

import asyncio

import pytest

from core.jobs.batching import Coalescer


async def test_concurrent_calls_share_a_flush_and_get_their_own_results() -> None:
    flushed: list[list[int]] = []

    async def flush(items: list[int]) -> list[int]:
        flushed.append(items)
        await asyncio.sleep(0.01)
        return [item * 10 for item in items]

    double = Coalescer(flush)
    assert await double(1) == 10  # alone: flushed at once
    results = await asyncio.gather(*(double(i) for i in range(2, 6)))
    assert results == [20, 30, 40, 50]
    assert flushed == [[1], [2, 3, 4, 5]]
    assert double.flushes == 2


async def test_calls_made_during_a_flush_go_out_in_the_next() -> None:
    flushed: list[list[str]] = []
    release = asyncio.Event()

    async def flush(items: list[str]) -> list[str]:
        flushed.append(items)
        if len(flushed) == 1:
            await release.wait()
        return items

    echo = Coalescer(flush)
    first = asyncio.create_task(echo("a"))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    later = [asyncio.create_task(echo(x)) for x in "bc"]
    await asyncio.sleep(0)
    release.set()
    assert [await first, *[await t for t in later]] == ["a", "b", "c"]
    assert flushed == [["a"], ["b", "c"]]


async def test_a_failed_flush_fails_each_of_its_calls_and_the_next_flush_works() -> None:
    async def flush(items: list[int]) -> list[int]:
        if 0 in items:
            raise ValueError("boom")
        return items

    same = Coalescer(flush)
    results = await asyncio.gather(same(0), same(1), return_exceptions=True)
    assert [type(r) for r in results] == [ValueError, ValueError]
    assert await same(2) == 2
    with pytest.raises(ValueError, match="boom"):
        await same(0)


async def test_calls_in_a_cancelled_flush_are_cancelled_not_left_waiting() -> None:
    started = asyncio.Event()

    async def flush(items: list[str]) -> list[str]:
        started.set()
        await asyncio.Event().wait()  # never answers
        return items

    stuck = Coalescer(flush)
    call = asyncio.create_task(stuck("a"))
    await started.wait()
    assert stuck._draining is not None
    stuck._draining.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(call, timeout=5)
    assert stuck._draining is None
