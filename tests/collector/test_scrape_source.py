"""The scrape source against real HTTP exporters: per-pod rates, gauges, and per-pod errors."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import msgspec
import pytest
from nats.aio.client import Client as NATS

from services.collector.config import ScrapeSourceConfig
from services.collector.discovery import ReplicaDirectory
from services.collector.sources.base import SourceContext
from services.collector.sources.scrape import ScrapeSource
from shared.clock import ManualClock
from shared.natsserver import free_port
from shared.schemas import MetricSample, ReplicaStatus, TargetStatus

from .conftest import Exporter, web_status

ExporterFactory = Callable[[], Awaitable[Exporter]]


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def scrape_config(**overrides: object) -> ScrapeSourceConfig:
    data: dict[str, object] = {
        "type": "scrape",
        "name": "replicas",
        "discover": True,
        "timeout_seconds": 1.0,
        "metrics": [
            {"match": "demo_requests_total", "as": "demo_requests_per_second", "kind": "rate"},
            {"match": "demo_inflight_requests"},
        ],
    }
    data.update(overrides)
    return msgspec.convert(data, ScrapeSourceConfig)


def source_for(
    config: ScrapeSourceConfig, http: aiohttp.ClientSession, clock: ManualClock, directory: ReplicaDirectory
):  # type: ignore[no-untyped-def]
    context = SourceContext(target="web", clock=clock, http=http, replicas=directory, nats=NATS(), config_dir=Path("."))
    return ScrapeSource(config, context)


async def test_discovered_replicas_are_scraped_and_counters_become_per_pod_rates(
    exporter_factory: ExporterFactory, http: aiohttp.ClientSession
) -> None:
    """Each replica's counter increase over the clock's elapsed time is its own `pod`-labelled rate."""
    one, two = await exporter_factory(), await exporter_factory()
    directory = ReplicaDirectory()
    directory.update(web_status(("web-1", one.url), ("web-2", two.url)))
    clock = ManualClock(1000.0)
    source = source_for(scrape_config(), http, clock, directory)

    one.inflight, two.inflight = 3, 4
    first = await source.collect()
    assert sorted((s.name, s.labels["pod"], s.value) for s in first) == [
        ("demo_inflight_requests", "web-1", 3.0),
        ("demo_inflight_requests", "web-2", 4.0),
    ], "a counter's first observation has no rate yet"

    one.requests_total, two.requests_total = 20, 5
    clock.advance(2.0)
    second = await source.collect()
    rates = sorted((s.labels["pod"], s.value) for s in second if s.name == "demo_requests_per_second")
    assert rates == [("web-1", 10.0), ("web-2", 2.5)]
    assert all(s.source == "replicas" and s.quality == "ok" and s.timestamp == 1002.0 for s in second)


async def test_static_endpoints_carry_their_configured_pod_label(
    exporter_factory: ExporterFactory, http: aiohttp.ClientSession
) -> None:
    exporter = await exporter_factory()
    exporter.inflight = 7
    config = scrape_config(discover=False, endpoints=[{"url": exporter.url + "/metrics", "pod": "static-1"}])
    source = source_for(config, http, ManualClock(), ReplicaDirectory())
    [sample] = await source.collect()
    assert (sample.name, sample.value, sample.labels) == ("demo_inflight_requests", 7.0, {"pod": "static-1"})


async def test_an_unreachable_replica_is_an_error_for_that_pod_only(
    exporter_factory: ExporterFactory, http: aiohttp.ClientSession
) -> None:
    good = await exporter_factory()
    good.inflight = 1
    directory = ReplicaDirectory()
    dead_url = f"http://127.0.0.1:{free_port()}"
    directory.update(web_status(("web-1", good.url), ("web-2", dead_url)))
    source = source_for(scrape_config(), http, ManualClock(), directory)
    samples = await source.collect()
    by_pod = {(s.labels["pod"], s.name): s for s in samples}
    assert by_pod[("web-1", "demo_inflight_requests")].quality == "ok"
    for name in ("demo_requests_per_second", "demo_inflight_requests"):
        failed = by_pod[("web-2", name)]
        assert failed.quality == "error" and dead_url in failed.error


@pytest.mark.parametrize(
    ("body", "http_status", "expected"),
    [
        ("<html>not metrics</html>", 200, "unparsable exposition"),
        ("demo_inflight_requests{ 3\n", 200, "unparsable exposition"),
        ("oops", 503, "HTTP 503"),
    ],
)
async def test_an_unparsable_or_failing_scrape_becomes_a_per_pod_error(
    exporter_factory: ExporterFactory, http: aiohttp.ClientSession, body: str, http_status: int, expected: str
) -> None:
    exporter = await exporter_factory()
    exporter.body_override, exporter.status = body, http_status
    directory = ReplicaDirectory()
    directory.update(status_msg(exporter.url))
    samples = await source_for(scrape_config(), http, ManualClock(), directory).collect()
    assert {s.quality for s in samples} == {"error"}
    assert all(expected in s.error and s.labels == {"pod": "web-1"} for s in samples)


def status_msg(url: str) -> TargetStatus:
    return web_status(("web-1", url))


async def test_only_running_replicas_with_an_endpoint_are_scraped(
    exporter_factory: ExporterFactory, http: aiohttp.ClientSession
) -> None:
    exporter = await exporter_factory()
    directory = ReplicaDirectory()
    directory.update(
        TargetStatus(
            target="web",
            backend="local",
            spec_replicas=3,
            current_replicas=3,
            ready_replicas=1,
            observed_at=1.0,
            replicas=(
                ReplicaStatus(name="web-1", endpoint=exporter.url),
                ReplicaStatus(name="web-2", endpoint=exporter.url, phase="Pending"),
                ReplicaStatus(name="web-3", endpoint=""),
            ),
        )
    )
    source = source_for(scrape_config(), http, ManualClock(), directory)
    assert [e.pod for e in source.endpoints()] == ["web-1"]


async def test_label_matchers_keep_only_matching_series(
    exporter_factory: ExporterFactory, http: aiohttp.ClientSession
) -> None:
    exporter = await exporter_factory()
    exporter.body_override = 'http_inflight{route="/a"} 2\nhttp_inflight{route="/b"} 9\n'
    config = scrape_config(
        metrics=[{"match": "http_inflight", "labels": {"route": "/b"}, "as": "inflight_b"}],
    )
    directory = ReplicaDirectory()
    directory.update(status_msg(exporter.url))
    [sample] = await source_for(config, http, ManualClock(), directory).collect()
    assert (sample.name, sample.value, sample.labels) == ("inflight_b", 9.0, {"route": "/b", "pod": "web-1"})


async def test_a_counter_series_gone_from_the_exposition_is_forgotten_and_starts_over_when_back(
    exporter_factory: ExporterFactory, http: aiohttp.ClientSession
) -> None:
    """Series (label sets) come and go; the rate state of one that vanished is dropped, not kept forever."""
    exporter = await exporter_factory()
    directory = ReplicaDirectory()
    directory.update(web_status(("web-1", exporter.url)))
    clock = ManualClock(100.0)
    source = source_for(scrape_config(), http, clock, directory)

    def exposition(**counts: int) -> str:
        lines = [f'demo_requests_total{{code="{code}"}} {count}' for code, count in counts.items()]
        return "# TYPE demo_requests_total counter\n" + "\n".join(lines) + "\n"

    def rates(samples: list[MetricSample]) -> dict[str, float]:
        return {s.labels["code"]: s.value for s in samples if s.name == "demo_requests_per_second"}

    exporter.body_override = exposition(ok=10, failed=4)
    await source.collect()
    exporter.body_override = exposition(ok=20)
    clock.advance(1.0)
    assert rates(await source.collect()) == {"ok": 10.0}
    exporter.body_override = exposition(ok=30, failed=6)
    clock.advance(1.0)
    assert rates(await source.collect()) == {"ok": 10.0}, "`failed` is observed anew: no rate across the gap"
    exporter.body_override = exposition(ok=40, failed=9)
    clock.advance(1.0)
    assert rates(await source.collect()) == {"ok": 10.0, "failed": 3.0}
