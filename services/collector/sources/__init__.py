"""The collector's sources, one module each, all behind :class:`services.collector.sources.base.Source`."""

from __future__ import annotations

from services.collector.config import (
    JetStreamSourceConfig,
    KafkaSourceConfig,
    KubernetesSourceConfig,
    ProcessSourceConfig,
    PrometheusSourceConfig,
    ScrapeSourceConfig,
    SourceConfig,
)
from services.collector.sources.base import Source, SourceContext


def build_source(config: SourceConfig, context: SourceContext) -> Source:
    """The source for a config entry (modules with heavy client libraries are imported on use)."""
    if isinstance(config, ScrapeSourceConfig):
        from services.collector.sources.scrape import ScrapeSource

        return ScrapeSource(config, context)
    if isinstance(config, PrometheusSourceConfig):
        from services.collector.sources.prometheus import PrometheusSource

        return PrometheusSource(config, context)
    if isinstance(config, ProcessSourceConfig):
        from services.collector.sources.process import ProcessSource

        return ProcessSource(config, context)
    if isinstance(config, JetStreamSourceConfig):
        from services.collector.sources.jetstream import JetStreamSource

        return JetStreamSource(config, context)
    if isinstance(config, KafkaSourceConfig):
        from services.collector.sources.kafka import KafkaLagSource

        return KafkaLagSource(config, context)
    if isinstance(config, KubernetesSourceConfig):
        from services.collector.sources.kubernetes import KubernetesPodSource

        return KubernetesPodSource(config, context)
    raise TypeError(f"no source for {type(config).__name__}")  # pragma: no cover - the union is closed
