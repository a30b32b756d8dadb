"""Direct scrape of Prometheus-text `/metrics` endpoints, counters turned into per-replica rates.

Endpoints are static URLs from the config and/or the target's running replicas (their
`endpoint` from TargetStatus, with `path` appended).  Endpoints are scraped concurrently, each
under its own timeout: an unreachable or unparsable endpoint becomes error samples for that pod
only, never a failure of the whole source.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from services.collector.config import ScrapeMetric, ScrapeSourceConfig
from services.collector.rates import CounterRates
from services.collector.samples import describe_error, error_sample, label_key
from services.collector.sources.base import SourceContext
from shared.schemas import MetricSample


@dataclass(frozen=True)
class ScrapeEndpoint:
    url: str
    pod: str


class ScrapeSource:
    """Scrapes the configured endpoints and keeps the configured metrics."""

    def __init__(self, config: ScrapeSourceConfig, context: SourceContext) -> None:
        self._config = config
        self._context = context
        self._rates: dict[str, dict[str, CounterRates]] = {}
        self._request_timeout = config.request_timeout_seconds or config.timeout_seconds * 0.8
        self.metric_names = tuple(dict.fromkeys(metric.output_name for metric in config.metrics))

    @property
    def name(self) -> str:
        return self._config.name

    def endpoints(self) -> list[ScrapeEndpoint]:
        """Static endpoints plus, when discovering, every running replica that has an endpoint."""
        found = [ScrapeEndpoint(url=endpoint.url, pod=endpoint.pod) for endpoint in self._config.endpoints]
        if self._config.discover:
            path = self._config.path if self._config.path.startswith("/") else "/" + self._config.path
            found.extend(
                ScrapeEndpoint(url=replica.endpoint.rstrip("/") + path, pod=replica.name)
                for replica in self._context.replicas.replicas(self._context.target)
                if replica.endpoint and replica.phase == "Running"
            )
        return found

    async def collect(self) -> list[MetricSample]:
        endpoints = self.endpoints()
        for url in set(self._rates) - {endpoint.url for endpoint in endpoints}:
            del self._rates[url]  # the replica went away: forget its counters
        results = await asyncio.gather(*(self._scrape(endpoint) for endpoint in endpoints))
        return [sample for samples in results for sample in samples]

    async def _fetch(self, url: str) -> str:
        timeout = aiohttp.ClientTimeout(total=self._request_timeout)
        async with self._context.http.get(url, timeout=timeout) as response:
            if response.status != 200:
                raise ScrapeFailed(f"HTTP {response.status} from {url}")
            return await response.text()

    async def _scrape(self, endpoint: ScrapeEndpoint) -> list[MetricSample]:
        labels = {"pod": endpoint.pod} if endpoint.pod else {}
        try:
            text = await self._fetch(endpoint.url)
            now = self._context.clock.now()
            exposed = _exposed_samples(text)
        except (aiohttp.ClientError, TimeoutError, ScrapeFailed) as exc:
            now = self._context.clock.now()
            error = f"scrape of {endpoint.url} failed: {describe_error(exc)}"
            return [
                error_sample(name, source=self.name, error=error, timestamp=now, labels=labels)
                for name in self.metric_names
            ]
        rates = self._rates.setdefault(endpoint.url, {})
        samples: list[MetricSample] = []
        for metric in self._config.metrics:
            for name, sample_labels, value in exposed:
                if name != metric.match or not _matches(metric, sample_labels):
                    continue
                out_labels = {**sample_labels, **labels}
                emitted: float | None = value
                if metric.kind == "rate":
                    tracker = rates.setdefault(metric.match, CounterRates(metric.rate_window_seconds))
                    emitted = tracker.observe(label_key(sample_labels), value, now)
                if emitted is None:
                    continue
                samples.append(
                    MetricSample(
                        name=metric.output_name,
                        value=emitted,
                        timestamp=now,
                        unit=metric.unit,
                        labels=out_labels,
                        source=self.name,
                    )
                )
        for tracker in rates.values():
            tracker.forget_unseen()  # series gone from the exposition: a later return starts over
        return samples

    async def close(self) -> None:
        self._rates.clear()


class ScrapeFailed(Exception):
    """An endpoint answered, but not with metrics."""


def _matches(metric: ScrapeMetric, labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in metric.labels.items())


def _exposed_samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    """(sample name, labels, value) of every sample in a Prometheus text exposition."""
    try:
        return [
            (sample.name, dict(sample.labels), float(sample.value))
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        ]
    except Exception as exc:  # the parser raises ValueError, but a scrape must never crash the source
        raise ScrapeFailed(f"unparsable exposition: {exc}") from exc
