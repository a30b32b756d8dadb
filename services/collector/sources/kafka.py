"""Kafka consumer-group lag: end offsets minus committed offsets, per partition, summed.

The group's committed offsets come from the admin API (``OffsetFetch``); the end offsets of
those partitions from a group-less consumer (``ListOffsets``).  Every broker call is bounded by
the source's timeout (aiokafka's ``end_offsets`` can wait forever on a missing partition).
Clients stay connected between collections and are rebuilt after a failure, or after a
collection the runner cut off at its timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from services.collector.config import KafkaSourceConfig
from services.collector.sources.base import SourceContext, SourceError
from shared.schemas import MetricSample

T = TypeVar("T")


def partition_lag(committed: int | None, end: int, uncommitted: str) -> int:
    """Lag of one partition; a committed offset past the end (after truncation) counts as caught up."""
    if committed is None or committed < 0:
        return end if uncommitted == "end" else 0
    return max(0, end - committed)


class KafkaLagSource:
    """One lag sample for the group (label `group`), and optionally one per topic (label `topic`)."""

    def __init__(self, config: KafkaSourceConfig, context: SourceContext) -> None:
        self._config = config
        self._context = context
        self._admin: Any = None
        self._consumer: Any = None
        self._abandoned = False
        self._timeout_ms = max(1000, int(config.timeout_seconds * 1000))
        self.metric_names = (config.as_,)

    @property
    def name(self) -> str:
        return self._config.name

    async def _bounded(self, call: Awaitable[T], what: str) -> T:
        try:
            return await asyncio.wait_for(call, timeout=self._config.timeout_seconds)
        except TimeoutError as exc:
            raise SourceError(f"kafka {what} timed out after {self._config.timeout_seconds:g}s") from exc

    async def _clients(self) -> tuple[Any, Any]:
        if self._admin is None:
            admin = AIOKafkaAdminClient(
                bootstrap_servers=self._config.bootstrap_servers,
                client_id=f"scalebus-collector-{self.name}",
                request_timeout_ms=self._timeout_ms,
            )
            try:
                await self._bounded(admin.start(), "admin connect")
            except BaseException:
                with contextlib.suppress(Exception):
                    await admin.close()
                raise
            self._admin = admin
        if self._consumer is None:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self._config.bootstrap_servers,
                client_id=f"scalebus-collector-{self.name}",
                enable_auto_commit=False,
                request_timeout_ms=max(self._timeout_ms, 1000),
            )
            try:
                await self._bounded(consumer.start(), "consumer connect")
            except BaseException:
                with contextlib.suppress(Exception):
                    await consumer.stop()
                raise
            self._consumer = consumer
        return self._admin, self._consumer

    async def _partitions(self, admin: Any) -> list[TopicPartition]:
        """Every partition of the configured topics (fresh metadata from the admin API)."""
        described = await self._bounded(admin.describe_topics(list(self._config.topics)), "metadata")
        found = {item.get("topic"): item for item in described if isinstance(item, dict)}
        partitions: list[TopicPartition] = []
        for topic in self._config.topics:
            item = found.get(topic)
            if item is None or item.get("error_code") or not item.get("partitions"):
                code = item.get("error_code") if item else "missing"
                raise SourceError(f"kafka topic {topic!r} not found (error code {code})")
            ids = sorted(int(partition["partition"]) for partition in item["partitions"])
            partitions.extend(TopicPartition(topic, partition) for partition in ids)
        return partitions

    async def lag_by_partition(self) -> dict[TopicPartition, int]:
        admin, consumer = await self._clients()
        wanted = await self._partitions(admin) if self._config.topics else None
        offsets = await self._bounded(
            admin.list_consumer_group_offsets(self._config.group, partitions=wanted), "committed offsets"
        )
        committed: dict[TopicPartition, int] = {tp: meta.offset for tp, meta in offsets.items()}
        if wanted is None and not committed:
            # Without configured topics the committed offsets are the only list of partitions: none is not
            # "no lag" (a new group, a misspelt group, or a coordinator still loading offsets after a restart
            # all look like this) and a zero here could scale a busy consumer down.
            raise SourceError(
                f"kafka group {self._config.group!r} has no committed offsets; "
                "configure `topics` to count uncommitted partitions"
            )
        partitions = wanted if wanted is not None else sorted(committed)
        ends: dict[TopicPartition, int] = await self._bounded(consumer.end_offsets(partitions), "end offsets")
        return {tp: partition_lag(committed.get(tp), ends[tp], self._config.uncommitted_lag) for tp in partitions}

    async def collect(self) -> list[MetricSample]:
        if self._abandoned:
            await self.close()  # the last collection was cut off mid-call: its clients may be in any state
        try:
            lags = await self.lag_by_partition()
        except SourceError:
            await self.close()
            raise
        except Exception as exc:
            await self.close()
            raise SourceError(f"kafka: {type(exc).__name__}: {exc}") from exc
        except asyncio.CancelledError:
            self._abandoned = True  # the runner's timeout: rebuild the clients next time, don't wait here
            raise
        now = self._context.clock.now()
        group = self._config.group
        samples = [
            MetricSample(
                name=self._config.as_,
                value=float(sum(lags.values())),
                timestamp=now,
                labels={"group": group},
                source=self.name,
            )
        ]
        if self._config.per_topic:
            per_topic: dict[str, int] = {}
            for tp, lag in lags.items():
                per_topic[tp.topic] = per_topic.get(tp.topic, 0) + lag
            samples.extend(
                MetricSample(
                    name=self._config.as_,
                    value=float(lag),
                    timestamp=now,
                    labels={"group": group, "topic": topic},
                    source=self.name,
                )
                for topic, lag in sorted(per_topic.items())
            )
        return samples

    async def close(self) -> None:
        self._abandoned = False
        admin, self._admin = self._admin, None
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(consumer.stop(), timeout=5.0)
        if admin is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(admin.close(), timeout=5.0)
