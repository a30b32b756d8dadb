"""The PromQL source against a real Prometheus (Debian package) scraping a real test exporter.

Skipped, with the reason, only when the Prometheus binary is not installed (`make test-deps`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import msgspec
import pytest
from nats.aio.client import Client as NATS

from services.collector.config import PrometheusSourceConfig
from services.collector.discovery import ReplicaDirectory
from services.collector.sources.base import SourceContext
from services.collector.sources.prometheus import PrometheusSource
from shared.clock import ManualClock
from shared.natsserver import free_port
from shared.schemas import MetricSample

from .conftest import CollectorFactory, SnapshotListener, config_from
from .servers import ExpositionServer, PrometheusServer, ServerUnavailable, find_prometheus, skip_unavailable

pytestmark = pytest.mark.prometheus

EXPOSITION = (
    "# TYPE queue_depth gauge\n"
    'queue_depth{queue="a",worker="w-1"} 3\n'
    'queue_depth{queue="b",worker="w-2"} 5\n'
    "# TYPE broken_ratio gauge\n"
    "broken_ratio NaN\n"
)


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    """One real Prometheus for the module, scraping a real exporter of EXPOSITION every second."""
    try:
        find_prometheus()
    except ServerUnavailable as exc:
        skip_unavailable(exc)
    exporter = ExpositionServer(EXPOSITION)
    exporter.start()
    server = PrometheusServer(tmp_path_factory.mktemp("prometheus"), [exporter.address])
    try:
        server.start()
        server.wait_for_series("queue_depth")
        yield server
    finally:
        server.stop()
        exporter.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def source(url: str, http: aiohttp.ClientSession, queries: list[dict[str, object]]) -> PrometheusSource:
    config = msgspec.convert(
        {"type": "prometheus", "name": "prom", "url": url, "timeout_seconds": 5.0, "queries": queries},
        PrometheusSourceConfig,
    )
    context = SourceContext(
        target="web", clock=ManualClock(), http=http, replicas=ReplicaDirectory(), nats=NATS(), config_dir=Path(".")
    )
    return PrometheusSource(config, context)


def by_name(samples: list[MetricSample]) -> dict[str, list[MetricSample]]:
    result: dict[str, list[MetricSample]] = {}
    for sample in samples:
        result.setdefault(sample.name, []).append(sample)
    return result


async def test_vector_and_scalar_results_become_samples_with_the_series_labels(
    prometheus: PrometheusServer, http: aiohttp.ClientSession
) -> None:
    samples = await source(
        prometheus.url,
        http,
        [
            {"query": "sum(queue_depth)", "as": "queue_total", "unit": "messages"},
            {"query": "queue_depth", "as": "queue_by_worker", "labels": ["queue"], "pod_label": "worker"},
            {"query": "scalar(sum(queue_depth))", "as": "queue_scalar"},
        ],
    ).collect()
    named = by_name(samples)
    [total] = named["queue_total"]
    assert (total.value, total.quality, total.unit, total.labels, total.source) == (8.0, "ok", "messages", {}, "prom")
    per_worker = sorted((s.labels["pod"], s.labels["queue"], s.value) for s in named["queue_by_worker"])
    assert per_worker == [("w-1", "a", 3.0), ("w-2", "b", 5.0)]
    assert all(set(s.labels) == {"queue", "pod"} for s in named["queue_by_worker"])
    assert [s.value for s in named["queue_scalar"]] == [8.0]


async def test_nan_and_empty_results_become_per_sample_errors_unless_a_default_is_configured(
    prometheus: PrometheusServer, http: aiohttp.ClientSession
) -> None:
    samples = await source(
        prometheus.url,
        http,
        [
            {"query": "broken_ratio", "as": "ratio"},
            {"query": "no_such_metric", "as": "missing"},
            {"query": "no_such_metric", "as": "missing_is_zero", "empty_as": 0},
            {"query": "sum(queue_depth)", "as": "queue_total"},
        ],
    ).collect()
    named = by_name(samples)
    [ratio] = named["ratio"]
    assert ratio.quality == "error" and "returned NaN" in ratio.error
    [missing] = named["missing"]
    assert missing.quality == "error" and "returned no data" in missing.error
    [zero] = named["missing_is_zero"]
    assert (zero.value, zero.quality) == (0.0, "ok")
    assert [s.value for s in named["queue_total"]] == [8.0]


async def test_a_promql_error_is_an_error_of_that_query_only(
    prometheus: PrometheusServer, http: aiohttp.ClientSession
) -> None:
    samples = await source(
        prometheus.url,
        http,
        [
            {"query": "sum(rate(queue_depth[1m]", "as": "broken"},
            {"query": "queue_depth[1m]", "as": "range"},
            {"query": "sum(queue_depth)", "as": "queue_total"},
        ],
    ).collect()
    named = by_name(samples)
    [range_vector] = named["range"]
    assert range_vector.quality == "error" and "returned a matrix" in range_vector.error
    [broken] = named["broken"]
    assert broken.quality == "error" and "bad_data" in broken.error and "parse error" in broken.error
    assert [s.quality for s in named["queue_total"]] == ["ok"]


async def test_an_unreachable_prometheus_is_a_per_sample_error(http: aiohttp.ClientSession) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    [sample] = await source(url, http, [{"query": "up", "as": "up"}]).collect()
    assert sample.quality == "error" and "failed" in sample.error


async def test_promql_samples_reach_the_targets_snapshots(
    prometheus: PrometheusServer, snapshots: SnapshotListener, collector_factory: CollectorFactory
) -> None:
    await collector_factory(
        config_from(
            {
                "snapshot_interval_seconds": 0.3,
                "targets": [
                    {
                        "name": "worker",
                        "sources": [
                            {
                                "type": "prometheus",
                                "name": "prom",
                                "url": prometheus.url,
                                "interval_seconds": 0.3,
                                "timeout_seconds": 2.0,
                                "queries": [{"query": "sum(queue_depth)", "as": "queue_total"}],
                            }
                        ],
                    }
                ],
            }
        )
    )
    snapshot = await snapshots.wait_for(lambda s: any(x.name == "queue_total" for x in s.samples), within=10.0)
    assert [(s.value, s.quality) for s in snapshot.samples] == [(8.0, "ok")]
