"""TargetStatus is published on change and periodically, and shows a paused target (manual clock)."""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry

from services.actuator.backends.base import Observed
from services.actuator.breaker import CircuitBreaker
from services.actuator.config import LocalBackendConfig, TargetConfig
from services.actuator.executor import TargetRuntime
from services.actuator.metrics import ActuatorMetrics
from services.actuator.status import StatusPublisher
from shared.clock import ManualClock
from shared.schemas import ReplicaStatus, TargetStatus


class FixedBackend:
    """A backend whose observation the test sets directly."""

    kind = "local"
    endpoint = "local"
    success_status: int | None = None

    def __init__(self) -> None:
        self.observed = Observed(spec_replicas=1, current_replicas=1, ready_replicas=0)
        self.changed = asyncio.Event()

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def read(self) -> Observed:
        return self.observed

    async def scale(self, replicas: int) -> Observed:
        raise NotImplementedError


async def test_status_goes_out_on_change_on_a_poke_and_every_interval_but_not_in_between() -> None:
    clock = ManualClock()
    backend = FixedBackend()
    breaker = CircuitBreaker(failure_threshold=3, open_seconds=30, clock=clock)
    target = TargetConfig(name="web", backend=LocalBackendConfig(command=["x"]))
    runtime = TargetRuntime(config=target, backend=backend, breaker=breaker)
    sent: list[TargetStatus] = []

    async def publish(status: TargetStatus) -> None:
        sent.append(status)

    publisher = StatusPublisher(
        {"web": runtime}, publish, interval=2.0, poll=0.05, clock=clock, metrics=ActuatorMetrics(CollectorRegistry())
    )
    assert await publisher.publish_if_due("web", runtime), "the first status goes out at once"
    clock.advance(0.5)
    assert not await publisher.publish_if_due("web", runtime), "nothing changed, interval not over"

    backend.observed = Observed(
        spec_replicas=1,
        current_replicas=1,
        ready_replicas=1,
        replicas=(ReplicaStatus(name="web-0", ready=True, endpoint="http://127.0.0.1:9"),),
    )
    backend.changed.set()
    assert await publisher.publish_if_due("web", runtime)
    assert sent[-1].ready_replicas == 1 and sent[-1].replicas[0].endpoint == "http://127.0.0.1:9"

    clock.advance(2.0)
    assert await publisher.publish_if_due("web", runtime), "periodic, even without a change"

    for _ in range(3):
        breaker.record_failure()
    publisher.poke("web")
    assert await publisher.publish_if_due("web", runtime)
    assert sent[-1].paused and sent[-1].breaker == "open"
    assert len(sent) == 4
