"""The natural batcher behind /predict: concurrent calls share a batch, each gets its own answer, a lone call
does not wait for company, and a failing batch fails only its own callers."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from serve_deployments.batching import NaturalBatcher


def _run(coroutine):
    return asyncio.run(coroutine)


def test_calls_queued_while_a_batch_is_scored_form_the_next_batch_and_each_gets_its_own_answer() -> None:
    batches: list[list[int]] = []
    first_started = threading.Event()

    def score(items: list[int]) -> list[int]:
        batches.append(items)
        first_started.set()
        time.sleep(0.05)  # the others arrive while this batch is being scored
        return [item * 10 for item in items]

    async def main() -> list[int]:
        batcher = NaturalBatcher(score, max_size=32)
        first = asyncio.ensure_future(batcher.submit(0))
        await asyncio.to_thread(first_started.wait)
        rest = [asyncio.ensure_future(batcher.submit(i)) for i in range(1, 9)]
        return await asyncio.gather(first, *rest)

    assert _run(main()) == [i * 10 for i in range(9)]
    assert batches == [[0], list(range(1, 9))]


def test_batches_never_exceed_the_maximum_size() -> None:
    sizes: list[int] = []

    def score(items: list[int]) -> list[int]:
        sizes.append(len(items))
        time.sleep(0.01)
        return items

    async def main() -> list[int]:
        batcher = NaturalBatcher(score, max_size=4)
        return await asyncio.gather(*(batcher.submit(i) for i in range(20)))

    assert _run(main()) == list(range(20))
    assert max(sizes) <= 4 and sum(sizes) == 20


def test_a_lone_call_is_scored_alone_without_waiting_for_company() -> None:
    batches: list[list[int]] = []

    def score(items: list[int]) -> list[int]:
        batches.append(items)
        return items

    async def main() -> int:
        batcher = NaturalBatcher(score, max_size=32)
        return await asyncio.wait_for(batcher.submit(2), timeout=30)  # a hang guard, not a speed check

    assert _run(main()) == 2
    assert batches == [[2]]


def test_a_failing_batch_fails_its_callers_and_the_next_batch_still_works() -> None:
    def score(items: list[int]) -> list[int]:
        if -1 in items:
            raise ValueError("bad item")
        return items

    async def main() -> int:
        batcher = NaturalBatcher(score, max_size=32)
        with pytest.raises(ValueError, match="bad item"):
            await batcher.submit(-1)
        return await batcher.submit(7)

    assert _run(main()) == 7


def test_each_batch_size_is_reported() -> None:
    reported: list[int] = []

    async def main() -> None:
        batcher = NaturalBatcher(lambda items: items, max_size=32, on_batch=reported.append)
        await asyncio.gather(*(batcher.submit(i) for i in range(5)))

    _run(main())
    assert sum(reported) == 5
