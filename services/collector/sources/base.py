"""What every source is: something that, when asked, measures one target and returns samples.

The runner (:mod:`services.collector.runner`) owns the schedule, the timeout, the retries and
the quality bookkeeping; a source only measures.  A source raises when nothing could be
measured at all; a partial failure (one replica unreachable) is an error sample in the result.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import aiohttp
from nats.aio.client import Client as NATS

from shared.clock import Clock
from shared.schemas import MetricSample, ReplicaStatus


class Source(Protocol):
    """One way of measuring a target's load."""

    @property
    def name(self) -> str:
        """The source's configured name (the `source` field of its samples)."""

    @property
    def metric_names(self) -> tuple[str, ...]:
        """Names of the samples it emits (used for error samples when it fails entirely)."""

    async def collect(self) -> list[MetricSample]:
        """Measure once; raise when nothing could be measured."""

    async def close(self) -> None:
        """Release connections."""


class SourceError(Exception):
    """A source could not measure anything; the message becomes the samples' error text."""


class ReplicaLookup(Protocol):
    """The replicas of a target as last reported by the actuator."""

    def replicas(self, target: str) -> tuple[ReplicaStatus, ...]: ...


@dataclass(frozen=True)
class SourceContext:
    """What sources are built with."""

    target: str
    clock: Clock
    http: aiohttp.ClientSession
    replicas: ReplicaLookup
    nats: NATS
    config_dir: Path
