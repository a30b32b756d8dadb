"""TargetStatus on the bus: published when a target changes and at least every ``interval`` seconds.

The actuator is the source of truth for current replicas and replica endpoints; the collector
discovers what to scrape from these messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from services.actuator.backends.base import BackendError, Observed
from services.actuator.executor import TargetRuntime
from services.actuator.metrics import ActuatorMetrics
from shared.clock import Clock
from shared.schemas import TargetStatus

log = logging.getLogger(__name__)

PublishStatus = Callable[[TargetStatus], Awaitable[None]]


class StatusPublisher:
    """Watches each target's backend and publishes its TargetStatus on change and periodically."""

    def __init__(
        self,
        targets: dict[str, TargetRuntime],
        publish: PublishStatus,
        *,
        interval: float,
        poll: float,
        clock: Clock,
        metrics: ActuatorMetrics,
    ) -> None:
        self._targets = targets
        self._publish = publish
        self._interval = interval
        self._poll = poll
        self._clock = clock
        self._metrics = metrics
        self._last: dict[str, tuple[Observed, str]] = {}
        self._last_published_at: dict[str, float] = {}
        self._poked: set[str] = set()
        self._wake = asyncio.Event()

    def poke(self, target: str) -> None:
        """Something changed (an actuation): publish soon, without waiting for the next poll."""
        self._poked.add(target)
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            for name, runtime in self._targets.items():
                try:
                    await self.publish_if_due(name, runtime)
                except Exception:
                    log.exception("status publish failed", extra={"target": name})
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._poll)

    async def publish_if_due(self, name: str, runtime: TargetRuntime) -> bool:
        """Publish when the target changed, was poked, or the interval passed; True when published."""
        backend = runtime.backend
        changed = backend.changed.is_set() or name in self._poked
        now = self._clock.now()
        due = now - self._last_published_at.get(name, float("-inf")) >= self._interval
        if not (changed or due or name not in self._last):
            return False
        backend.changed.clear()
        self._poked.discard(name)
        try:
            observed = await backend.read()
        except BackendError as exc:
            log.warning("cannot read target status", extra={"target": name, "error": str(exc)})
            return False
        breaker = runtime.breaker.state
        key = (observed, breaker)
        if not due and self._last.get(name) == key:
            return False
        status = TargetStatus(
            target=name,
            backend=backend.kind,
            spec_replicas=observed.spec_replicas,
            current_replicas=observed.current_replicas,
            ready_replicas=observed.ready_replicas,
            observed_at=now,
            replicas=observed.replicas,
            paused=breaker == "open",
            breaker=breaker,
        )
        await self._publish(status)
        self._last[name] = key
        self._last_published_at[name] = now
        self._metrics.status_published.labels(name).inc()
        self._metrics.replicas.labels(name, "spec").set(observed.spec_replicas)
        self._metrics.replicas.labels(name, "current").set(observed.current_replicas)
        self._metrics.replicas.labels(name, "ready").set(observed.ready_replicas)
        return True
