"""Runs one source on its own schedule, under its own timeout and retry policy.

Each source has its own task, so one slow or failing source never delays another.  Every
outcome (samples, a timeout, an exception) is turned into samples with a quality and handed to
the sink; failures are also counted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from services.collector.config import SourceConfig
from services.collector.metrics import CollectorMetrics
from services.collector.quality import SourceQuality
from services.collector.samples import describe_error
from services.collector.sources.base import Source
from shared.clock import Clock
from shared.schemas import MetricSample
from shared.tasks import cancel_and_wait

log = logging.getLogger(__name__)

SampleSink = Callable[[str, list[MetricSample]], None]
"""Receives (source name, samples) after every collection."""


class SourceRunner:
    """Collects from one source every interval until stopped."""

    def __init__(
        self,
        *,
        target: str,
        source: Source,
        config: SourceConfig,
        sink: SampleSink,
        clock: Clock,
        metrics: CollectorMetrics,
    ) -> None:
        self._target = target
        self._source = source
        self._config = config
        self._sink = sink
        self._clock = clock
        self._metrics = metrics
        self._quality = SourceQuality(source.name, source.metric_names, config.max_stale_seconds)
        self._task: asyncio.Task[None] | None = None
        self._failing_with = ""
        """The error of the ongoing failure (logged once when it starts or changes, not every interval)."""

    @property
    def source(self) -> Source:
        return self._source

    async def collect_once(self) -> list[MetricSample]:
        """One collection: up to `retry.attempts` attempts, each bounded by `timeout_seconds`."""
        retry = self._config.retry
        backoff = retry.backoff_seconds
        error = ""
        started = time.perf_counter()
        for attempt in range(retry.attempts):
            if attempt:
                await asyncio.sleep(backoff)
                backoff *= 2
            try:
                raw = await asyncio.wait_for(self._source.collect(), timeout=self._config.timeout_seconds)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                error = describe_error(exc)
                if isinstance(exc, TimeoutError):
                    error = f"timed out after {self._config.timeout_seconds:g}s"
                log.debug("collection failed", extra={"target": self._target, "source": self.name, "error": error})
                continue
            self._observe(started, "ok")
            if self._failing_with:
                log.info("source recovered", extra={"target": self._target, "source": self.name})
                self._failing_with = ""
            samples = self._quality.on_success(raw, self._clock.now())
            errors = sum(1 for sample in samples if sample.quality != "ok")
            if errors:
                self._metrics.source_errors.labels(self._target, self.name, "sample").inc(errors)
            return samples
        self._observe(started, "error")
        self._metrics.source_errors.labels(self._target, self.name, "collection").inc()
        if error != self._failing_with:
            log.warning(
                "source failed",
                extra={"target": self._target, "source": self.name, "error": error, "attempts": retry.attempts},
            )
            self._failing_with = error
        return self._quality.on_failure(error, self._clock.now())

    def _observe(self, started: float, outcome: str) -> None:
        self._metrics.collections.labels(self._target, self.name, outcome).inc()
        self._metrics.collection_seconds.labels(self._config.__struct_config__.tag or "").observe(
            time.perf_counter() - started
        )

    @property
    def name(self) -> str:
        return self._source.name

    async def run(self) -> None:
        """Collect, hand over, wait out the rest of the interval; repeat."""
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                samples = await self.collect_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug in a source must not end its schedule
                log.exception("collection crashed", extra={"target": self._target, "source": self.name})
                samples = self._quality.on_failure("internal error in source", self._clock.now())
            self._sink(self.name, samples)
            await asyncio.sleep(max(0.0, self._config.interval_seconds - (loop.time() - started)))

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name=f"source:{self._target}:{self.name}")

    async def stop(self) -> None:
        """Cancel the schedule (an in-flight collection is abandoned) and close the source."""
        task, self._task = self._task, None
        if task is not None:
            await cancel_and_wait(task)
        try:
            await self._source.close()
        except Exception:
            log.exception("closing source failed", extra={"target": self._target, "source": self.name})
