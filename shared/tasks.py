"""Stopping background tasks reliably.

nats-py swallows ``CancelledError`` inside ``publish`` (``Client._flush_pending``), so a single
``cancel()`` that lands while a task is publishing can be lost and the task runs on.  Cancel
until the task has really ended, within a bound.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

log = logging.getLogger(__name__)


async def cancel_and_wait(task: asyncio.Task[Any], *, within: float = 5.0) -> bool:
    """Cancel ``task`` (again and again if needed) until it ends; False if it outlives ``within``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=min(0.1, max(0.0, deadline - loop.time())))
        if loop.time() >= deadline and not task.done():
            log.warning("task did not stop", extra={"task": task.get_name()})
            return False
    if not task.cancelled() and task.exception() is not None:
        log.warning("task ended with an error", extra={"task": task.get_name(), "error": repr(task.exception())})
    return True
