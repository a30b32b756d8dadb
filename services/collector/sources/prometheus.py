"""PromQL instant queries over the Prometheus HTTP API (`GET /api/v1/query`).

Each series of a vector result becomes a sample; a scalar result becomes one sample.  Values
arrive as strings and may be "NaN" or "+Inf": those, an empty result, and a PromQL error
(`status: error`) become per-sample errors of that query only.  Queries run concurrently.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import aiohttp

from services.collector.config import PrometheusSourceConfig, PromQuery
from services.collector.samples import describe_error, error_sample
from services.collector.sources.base import SourceContext
from shared.schemas import MetricSample


class QueryFailed(Exception):
    """Prometheus answered with an error, or not with a query result."""


class PrometheusSource:
    """Runs the configured instant queries."""

    def __init__(self, config: PrometheusSourceConfig, context: SourceContext) -> None:
        self._config = config
        self._context = context
        self._endpoint = config.url.rstrip("/") + "/api/v1/query"
        self.metric_names = tuple(dict.fromkeys(query.as_ for query in config.queries))

    @property
    def name(self) -> str:
        return self._config.name

    async def collect(self) -> list[MetricSample]:
        results = await asyncio.gather(*(self._run(query) for query in self._config.queries))
        return [sample for samples in results for sample in samples]

    async def _query(self, query: PromQuery) -> dict[str, Any]:
        params = {"query": query.query, "timeout": f"{self._config.timeout_seconds:g}s"}
        timeout = aiohttp.ClientTimeout(total=self._config.timeout_seconds)
        async with self._context.http.get(self._endpoint, params=params, timeout=timeout) as response:
            try:
                body = await response.json(content_type=None)
            except ValueError as exc:
                raise QueryFailed(f"HTTP {response.status}: not a JSON answer") from exc
        if not isinstance(body, dict):
            raise QueryFailed(f"HTTP {response.status}: unexpected answer")
        if body.get("status") != "success":
            kind = body.get("errorType", "error")
            raise QueryFailed(f"{kind}: {body.get('error', f'HTTP {response.status}')}")
        data = body.get("data")
        if not isinstance(data, dict):
            raise QueryFailed("answer without data")
        return data

    async def _run(self, query: PromQuery) -> list[MetricSample]:
        try:
            data = await self._query(query)
        except (aiohttp.ClientError, TimeoutError, QueryFailed) as exc:
            return [self._error(query, f"query {query.query!r} failed: {describe_error(exc)}")]
        now = self._context.clock.now()
        result_type, result = data.get("resultType"), data.get("result")
        series: list[tuple[dict[str, str], str]] = []
        if result_type == "vector" and isinstance(result, list):
            series = [(dict(item.get("metric", {})), str(item.get("value", [0, "NaN"])[1])) for item in result]
        elif result_type == "scalar" and isinstance(result, list):
            series = [({}, str(result[1]))]
        else:
            return [self._error(query, f"query {query.query!r} returned a {result_type}, not a vector or scalar")]
        if not series:
            if query.empty_as is not None:
                return [self._sample(query, {}, query.empty_as, now)]
            return [self._error(query, f"query {query.query!r} returned no data")]
        samples = []
        for labels, text in series:
            try:
                value = float(text)
            except ValueError:
                value = math.nan
            if math.isfinite(value):
                samples.append(self._sample(query, labels, value, now))
            else:
                error = f"query {query.query!r} returned {text}"
                samples.append(self._error(query, error, self._labels(query, labels)))
        return samples

    def _labels(self, query: PromQuery, metric: dict[str, str]) -> dict[str, str]:
        metric = {key: value for key, value in metric.items() if key != "__name__"}
        labels = metric if query.labels is None else {k: v for k, v in metric.items() if k in query.labels}
        if query.pod_label and query.pod_label in metric:
            labels = {**labels, "pod": metric[query.pod_label]}
        return labels

    def _sample(self, query: PromQuery, metric: dict[str, str], value: float, now: float) -> MetricSample:
        return MetricSample(
            name=query.as_,
            value=value,
            timestamp=now,
            unit=query.unit,
            labels=self._labels(query, metric),
            source=self.name,
        )

    def _error(self, query: PromQuery, error: str, labels: dict[str, str] | None = None) -> MetricSample:
        return error_sample(
            query.as_,
            source=self.name,
            error=error,
            timestamp=self._context.clock.now(),
            labels=labels,
            unit=query.unit,
        )

    async def close(self) -> None:
        return None
