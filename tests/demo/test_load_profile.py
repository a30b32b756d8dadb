"""The demo's load generator follows its profile and is bounded: it stops by itself."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

from scalebus.demo.loadgen import LoadGenerator, LoadProfile
from shared.schemas import ReplicaStatus, TargetStatus

PROFILE = LoadProfile(
    base_rps=2,
    peak_rps=12,
    base_seconds=5,
    ramp_up_seconds=10,
    hold_seconds=5,
    ramp_down_seconds=10,
    idle_seconds=10,
    cycles=2,
)


@pytest.mark.parametrize(
    ("elapsed", "rate"),
    [
        (0, 2),
        (4.9, 2),
        (5, 2),
        (10, 7),
        (15, 12),
        (19.9, 12),
        (25, 7),
        (30, 2),
        (39.9, 2),
        (40 + 15, 12),  # second cycle
        (80, 0),  # every cycle done
        (-1, 0),
    ],
)
def test_the_rate_ramps_up_holds_ramps_down_and_idles(elapsed: float, rate: float) -> None:
    assert PROFILE.cycle_seconds == 40
    assert PROFILE.rate_at(elapsed) == pytest.approx(rate)


def status(*replicas: ReplicaStatus) -> TargetStatus:
    return TargetStatus(
        target="web",
        backend="local",
        spec_replicas=len(replicas),
        current_replicas=len(replicas),
        ready_replicas=sum(r.ready for r in replicas),
        observed_at=0,
        replicas=replicas,
    )


async def test_requests_go_round_robin_to_ready_replicas_only_and_the_run_ends_by_itself() -> None:
    hits: dict[str, int] = {"a": 0, "b": 0}
    runners = []
    endpoints = {}
    for name in ("a", "b"):

        async def handle(_: web.Request, name: str = name) -> web.Response:
            hits[name] += 1
            return web.Response(text="ok")

        app = web.Application()
        app.router.add_get("/", handle)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        endpoints[name] = f"http://127.0.0.1:{runner.addresses[0][1]}"

    profile = LoadProfile(
        base_rps=40,
        peak_rps=40,
        base_seconds=1,
        ramp_up_seconds=0,
        hold_seconds=0,
        ramp_down_seconds=0,
        idle_seconds=0,
        cycles=1,
    )
    generator = LoadGenerator(profile)
    generator.observe(
        status(
            ReplicaStatus(name="a", ready=True, endpoint=endpoints["a"]),
            ReplicaStatus(name="b", ready=True, endpoint=endpoints["b"]),
            ReplicaStatus(name="c", ready=False, endpoint="http://127.0.0.1:9"),
        )
    )
    await asyncio.wait_for(generator.run(asyncio.Event()), timeout=10)
    for runner in runners:
        await runner.cleanup()

    assert generator.failed == 0
    assert generator.sent == hits["a"] + hits["b"]
    assert 30 <= generator.sent <= 45
    assert abs(hits["a"] - hits["b"]) <= 1


async def test_with_no_ready_replica_load_is_counted_as_dropped_not_sent() -> None:
    profile = LoadProfile(
        base_rps=50, base_seconds=0.3, ramp_up_seconds=0, hold_seconds=0, ramp_down_seconds=0, idle_seconds=0, cycles=1
    )
    generator = LoadGenerator(profile)
    generator.observe(status(ReplicaStatus(name="a", ready=False, endpoint="http://127.0.0.1:9")))
    await asyncio.wait_for(generator.run(asyncio.Event()), timeout=5)
    assert generator.sent == 0
    assert generator.dropped > 0


async def test_setting_stop_ends_the_run_early() -> None:
    generator = LoadGenerator(PROFILE)
    stop = asyncio.Event()
    task = asyncio.create_task(generator.run(stop))
    await asyncio.sleep(0.1)
    stop.set()
    await asyncio.wait_for(task, timeout=2)
