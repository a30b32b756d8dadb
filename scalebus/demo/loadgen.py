"""A bounded load generator: ramps request rate up, holds, ramps down, idles; repeats a fixed number of cycles.

It learns where the replicas are from the actuator's ``TargetStatus`` and spreads requests
round-robin over the ready ones, like a load balancer would.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from typing import Annotated

import aiohttp
import msgspec

from shared.config import Config
from shared.schemas import TargetStatus

log = logging.getLogger(__name__)

Seconds = Annotated[float, msgspec.Meta(ge=0)]
Rate = Annotated[float, msgspec.Meta(ge=0, le=10_000)]


class LoadProfile(Config, frozen=True, kw_only=True):
    """One cycle: base -> ramp up -> hold at peak -> ramp down -> base; ``cycles`` times."""

    base_rps: Rate = 2.0
    peak_rps: Rate = 30.0
    base_seconds: Seconds = 5.0
    ramp_up_seconds: Seconds = 15.0
    hold_seconds: Seconds = 20.0
    ramp_down_seconds: Seconds = 10.0
    idle_seconds: Seconds = 30.0
    cycles: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 20
    max_inflight: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 200
    request_timeout_seconds: Annotated[float, msgspec.Meta(gt=0)] = 5.0

    @property
    def cycle_seconds(self) -> float:
        return self.base_seconds + self.ramp_up_seconds + self.hold_seconds + self.ramp_down_seconds + self.idle_seconds

    @property
    def total_seconds(self) -> float:
        return self.cycle_seconds * self.cycles

    def rate_at(self, elapsed: float) -> float:
        """Requests per second wanted ``elapsed`` seconds after the start; 0 once every cycle is done."""
        if elapsed < 0 or elapsed >= self.total_seconds or self.cycle_seconds == 0:
            return 0.0
        t = elapsed % self.cycle_seconds
        span = self.peak_rps - self.base_rps
        if t < self.base_seconds:
            return self.base_rps
        t -= self.base_seconds
        if t < self.ramp_up_seconds:
            return self.base_rps + span * t / self.ramp_up_seconds
        t -= self.ramp_up_seconds
        if t < self.hold_seconds:
            return self.peak_rps
        t -= self.hold_seconds
        if t < self.ramp_down_seconds:
            return self.peak_rps - span * t / self.ramp_down_seconds
        return self.base_rps


class LoadGenerator:
    """Sends requests at ``profile.rate_at(t)`` to the ready replicas of one target."""

    def __init__(self, profile: LoadProfile, *, tick: float = 0.02) -> None:
        self.profile = profile
        self._tick = tick
        self._endpoints: tuple[str, ...] = ()
        self._rotation: itertools.cycle[str] | None = None
        self._inflight = asyncio.Semaphore(profile.max_inflight)
        self._tasks: set[asyncio.Task[None]] = set()
        self.sent = 0
        self.succeeded = 0
        self.failed = 0
        self.dropped = 0
        """Requests not sent because no replica was ready or max_inflight was reached."""
        self.current_rate = 0.0

    def observe(self, status: TargetStatus) -> None:
        """Follow the replicas: only ready replicas with an endpoint get traffic."""
        endpoints = tuple(sorted(r.endpoint for r in status.replicas if r.ready and r.endpoint))
        if endpoints != self._endpoints:
            self._endpoints = endpoints
            self._rotation = itertools.cycle(endpoints) if endpoints else None

    async def run(self, stop: asyncio.Event) -> None:
        """Generate load until every cycle is done or ``stop`` is set."""
        timeout = aiohttp.ClientTimeout(total=self.profile.request_timeout_seconds)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            started = time.monotonic()
            owed = 0.0
            last = started
            while not stop.is_set():
                now = time.monotonic()
                elapsed = now - started
                if elapsed >= self.profile.total_seconds:
                    break
                self.current_rate = self.profile.rate_at(elapsed)
                owed += self.current_rate * (now - last)
                last = now
                while owed >= 1.0:
                    owed -= 1.0
                    self._send(session)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=self._tick)
            self.current_rate = 0.0
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _send(self, session: aiohttp.ClientSession) -> None:
        if self._rotation is None or self._inflight.locked():
            self.dropped += 1
            return
        task = asyncio.create_task(self._request(session, next(self._rotation)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _request(self, session: aiohttp.ClientSession, endpoint: str) -> None:
        async with self._inflight:
            self.sent += 1
            try:
                async with session.get(endpoint + "/") as response:
                    await response.read()
                    if response.status == 200:
                        self.succeeded += 1
                    else:
                        self.failed += 1
            except (aiohttp.ClientError, TimeoutError):
                self.failed += 1
