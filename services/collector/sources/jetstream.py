"""Backlog of a NATS JetStream consumer: messages not yet delivered plus delivered but unacked.

Uses the collector's own NATS connection, or a separate one when the stream lives on another
server (`url`).
"""

from __future__ import annotations

import contextlib

from nats.aio.client import Client as NATS
from nats.js.errors import NotFoundError

from services.collector.config import JetStreamSourceConfig
from services.collector.sources.base import SourceContext, SourceError
from shared.schemas import MetricSample


class JetStreamSource:
    """One `jetstream_consumer_backlog` sample (labels `stream`, `consumer`)."""

    def __init__(self, config: JetStreamSourceConfig, context: SourceContext) -> None:
        self._config = config
        self._context = context
        self._own: NATS | None = None
        self.metric_names = (config.as_,)

    @property
    def name(self) -> str:
        return self._config.name

    async def _connection(self) -> NATS:
        if not self._config.url:
            return self._context.nats
        if self._own is None or self._own.is_closed:
            nc = NATS()
            await nc.connect(
                servers=[self._config.url],
                connect_timeout=max(1, round(self._config.timeout_seconds)),
                allow_reconnect=True,
                max_reconnect_attempts=-1,
                name=f"collector-jetstream-{self.name}",
            )
            self._own = nc
        return self._own

    async def collect(self) -> list[MetricSample]:
        nc = await self._connection()
        try:
            info = await nc.jetstream().consumer_info(
                self._config.stream, self._config.consumer, timeout=self._config.timeout_seconds
            )
        except NotFoundError as exc:
            raise SourceError(
                f"consumer {self._config.consumer!r} or stream {self._config.stream!r} not found: {exc.description}"
            ) from exc
        backlog = (info.num_pending or 0) + (info.num_ack_pending or 0)
        return [
            MetricSample(
                name=self._config.as_,
                value=float(backlog),
                timestamp=self._context.clock.now(),
                labels={"stream": self._config.stream, "consumer": self._config.consumer},
                source=self.name,
            )
        ]

    async def close(self) -> None:
        own, self._own = self._own, None
        if own is not None:
            with contextlib.suppress(Exception):
                await own.close()
