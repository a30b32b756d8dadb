"""Background tasks stop even when a library swallows a cancellation (nats-py does, inside publish)."""

from __future__ import annotations

import asyncio
import contextlib

from shared.tasks import cancel_and_wait


async def test_a_task_that_swallows_one_cancellation_is_cancelled_again_until_it_ends() -> None:
    swallowed = 0

    async def stubborn() -> None:
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                swallowed += 1
                if swallowed >= 3:
                    raise

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    assert await cancel_and_wait(task, within=5)
    assert task.cancelled()
    assert swallowed == 3


async def test_a_task_that_never_ends_is_reported_after_the_bound() -> None:
    release = asyncio.Event()

    async def immortal() -> None:
        while not release.is_set():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(10)

    task = asyncio.create_task(immortal())
    await asyncio.sleep(0)
    assert not await cancel_and_wait(task, within=0.3)
    assert not task.done()
    release.set()
    task.cancel()
    await asyncio.wait({task}, timeout=1)


async def test_a_finished_task_is_left_alone() -> None:
    async def quick() -> int:
        return 1

    task = asyncio.create_task(quick())
    await task
    assert await cancel_and_wait(task)
    assert task.result() == 1
