"""The collector: runs every owned target's sources, ingests pushed metrics, publishes snapshots.

- one task per source (:class:`SourceRunner`), so a slow source delays nobody;
- one MetricSnapshot per owned target per `snapshot_interval_seconds`, all targets in one batch;
- pushed samples are forwarded after a short coalescing window (`push.flush_seconds`), and a
  sample crossing a threshold is forwarded at once (`urgent=True`);
- targets are shared with other collector instances through :class:`Membership`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

import aiohttp
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from prometheus_client import CollectorRegistry

from services.collector.config import CollectorConfig, TargetConfig
from services.collector.discovery import ReplicaDirectory
from services.collector.metrics import CollectorMetrics
from services.collector.ownership import Membership
from services.collector.pushes import PushDecoder, PushedMetric
from services.collector.runner import SampleSink, SourceRunner
from services.collector.sources import build_source
from services.collector.sources.base import SourceContext
from services.collector.target import PushLimitExceeded, TargetState
from shared.bus import Bus
from shared.clock import Clock
from shared.codec import MessageDecoder
from shared.config import BusConfig
from shared.errors import PermanentError
from shared.schemas import MetricSample, TargetStatus
from shared.tasks import cancel_and_wait

log = logging.getLogger(__name__)


class Collector:
    """One collector instance."""

    def __init__(
        self,
        config: CollectorConfig,
        *,
        bus: Bus,
        instance: str,
        registry: CollectorRegistry,
        clock: Clock,
        config_dir: Path,
        push_bus_config: BusConfig | None = None,
    ) -> None:
        """``push_bus_config``: pushes arrive on a connection of their own (see :meth:`start`); None: on ``bus``."""
        self._config = config
        self._bus = bus
        self._subjects = bus.subjects
        self.instance = instance
        self._clock = clock
        self._config_dir = config_dir
        self.metrics = CollectorMetrics(registry)
        self._ignored_not_owner = self.metrics.pushes_ignored.labels("not_owner")
        self._target_configs: dict[str, TargetConfig] = {target.name: target for target in config.targets}
        self.replicas = ReplicaDirectory()
        self.states: dict[str, TargetState] = {}
        self._runners: dict[str, list[SourceRunner]] = {}
        self._subscriptions: list[Subscription] = []
        self._push_bus_config = push_bus_config
        self._push_bus: Bus | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._forward = asyncio.Event()
        self._reconcile_lock = asyncio.Lock()
        self._http: aiohttp.ClientSession | None = None
        self._metrics_prefix = self._subjects.metrics("")
        self._push_decoder = PushDecoder()
        self.membership: Membership | None = None
        if config.ownership.enabled:
            self.membership = Membership(
                bus.js,
                bucket=self._subjects.bucket_name("collector_owners"),
                instance=instance,
                heartbeat_seconds=config.ownership.heartbeat_seconds,
                member_ttl_seconds=config.ownership.member_ttl_seconds,
                on_change=self._on_members_changed,
            )

    # -- ownership ---------------------------------------------------------------------------

    def owns(self, target: str) -> bool:
        return self.membership is None or self.membership.owns(target)

    @property
    def owned_targets(self) -> list[str]:
        return sorted(name for name in self._target_configs if self.owns(name))

    async def _on_members_changed(self, members: frozenset[str]) -> None:
        self.metrics.members.set(len(members))
        await self.reconcile()

    async def reconcile(self) -> None:
        """Start collecting the targets this instance owns, stop collecting the others."""
        async with self._reconcile_lock:
            for name in list(self.states):
                if not self.owns(name):
                    await self._release(name)
            for name, target in self._target_configs.items():
                if self.owns(name) and name not in self._runners:
                    self._adopt(target)
            self.metrics.owned_targets.set(len(self._runners))

    def _adopt(self, target: TargetConfig) -> None:
        assert self._http is not None, "start() first"
        state = self.states.get(target.name)
        if state is None or not state.configured:
            state = TargetState(target.name, target.thresholds, self._config.push, configured=True)
            self.states[target.name] = state
        context = SourceContext(
            target=target.name,
            clock=self._clock,
            http=self._http,
            replicas=self.replicas,
            nats=self._bus.nc,
            config_dir=self._config_dir,
        )
        runners = [
            SourceRunner(
                target=target.name,
                source=build_source(source, context),
                config=source,
                sink=self._sink(state),
                clock=self._clock,
                metrics=self.metrics,
            )
            for source in target.sources
        ]
        self._runners[target.name] = runners
        for runner in runners:
            runner.start()
        log.info("collecting target", extra={"target": target.name, "sources": [r.name for r in runners]})

    async def _release(self, name: str) -> None:
        runners = self._runners.pop(name, [])
        await asyncio.gather(*(runner.stop() for runner in runners))
        self.states.pop(name, None)
        log.info("released target", extra={"target": name})

    def _sink(self, state: TargetState) -> SampleSink:
        def accept(source: str, samples: list[MetricSample]) -> None:
            if state.update_source(source, samples):
                self._forward.set()

        return accept

    # -- inputs ------------------------------------------------------------------------------

    async def _on_status(self, status: TargetStatus, _: Msg) -> None:
        self.replicas.update(status)

    async def _on_push_message(self, msg: Msg) -> None:
        """A pushed message: only the target's owner decodes it, ingests it, or dead-letters it."""
        target = msg.subject[len(self._metrics_prefix) :]
        if not self.owns(target):
            self._ignored_not_owner.inc()
            return
        try:
            await self._ingest(target, self._push_decoder.decode(msg.data))
        except PermanentError as exc:  # includes MalformedMessage
            await self._bus.dead_letter(msg.subject, msg.data, str(exc))
        except Exception:
            log.exception("ingesting a pushed metric failed", extra={"subject": msg.subject})

    async def _ingest(self, target: str, pushes: list[PushedMetric]) -> None:
        """One MetricPush, or a JSON array of them, for the subject's target."""
        for push in pushes:
            if push.target != target:
                raise PermanentError(f"target {push.target!r} does not match the subject's target {target!r}")
        if not pushes:
            return
        state = self.states.get(target)
        if state is None:
            if not self._config.push.accept_unconfigured_targets:
                raise PermanentError(f"unknown target {target!r} (push.accept_unconfigured_targets is false)")
            state = TargetState(target, (), self._config.push, configured=False)
            self.states[target] = state
        now = self._clock.now()
        crossed = False
        try:
            for push in pushes:
                crossed = state.push(push, now) or crossed
        except PushLimitExceeded as exc:
            self.metrics.pushes_ignored.labels("series_limit").inc()
            raise PermanentError(str(exc)) from exc
        self.metrics.pushed_samples.inc(len(pushes))
        if crossed or self._config.push.flush_seconds is not None:
            self._forward.set()

    # -- outputs -----------------------------------------------------------------------------

    async def publish_snapshot(self, state: TargetState, trigger: str) -> None:
        snapshot = state.snapshot(self._clock.now(), self.instance)
        await self._bus.publish(self._subjects.snapshots(state.name), snapshot)
        self.metrics.snapshots.labels("urgent" if snapshot.urgent else trigger).inc()

    async def publish_all(self) -> None:
        """One snapshot of every owned target (the interval batch)."""
        now = self._clock.now()
        for name, state in list(self.states.items()):
            state.expire_pushes(now)
            if not state.configured and state.empty:
                del self.states[name]  # a push-only target whose pushes expired
                continue
            await self.publish_snapshot(state, "interval")
        await self._bus.nc.flush(timeout=5)

    async def _interval_loop(self) -> None:
        loop = asyncio.get_running_loop()
        interval = self._config.snapshot_interval_seconds
        next_at = loop.time() + interval
        while True:
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            # Keep the cadence, but after a late tick never publish again within half an interval.
            next_at = max(next_at + interval, loop.time() + interval / 2)
            try:
                await self.publish_all()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("publishing snapshots failed", extra={"error": repr(exc)})

    async def _forward_loop(self) -> None:
        """Forward urgent targets at once and targets with fresh pushes after the coalescing window."""
        window = self._config.push.flush_seconds
        while True:
            await self._forward.wait()
            self._forward.clear()
            if window and not any(state.urgent for state in self.states.values()):
                await asyncio.sleep(window)
                self._forward.clear()
            try:
                for state in list(self.states.values()):
                    if state.urgent or (window is not None and state.dirty):
                        await self.publish_snapshot(state, "push")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("forwarding snapshots failed", extra={"error": repr(exc)})

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        self._http = aiohttp.ClientSession()
        self._subscriptions.append(
            await self._bus.subscribe(self._subjects.status_all, MessageDecoder(TargetStatus), self._on_status)
        )
        if self._config.push.enabled:
            # Pushes get a connection of their own: a publisher flood that makes it a slow consumer (nats-server
            # then cuts it off) must not cost the statuses, snapshots and heartbeats on the main connection.
            push_bus = self._bus
            if self._push_bus_config is not None:
                push_bus = self._push_bus = await Bus.connect(
                    self._push_bus_config, service="collector", instance=f"{self.instance}-pushes"
                )
            # A raw subscription: ownership is checked on the subject before decoding, so with several
            # collectors only the target's owner decodes a push (and dead-letters it if malformed).
            self._subscriptions.append(
                await push_bus.nc.subscribe(self._subjects.metrics_all, cb=self._on_push_message)
            )
            await push_bus.subscriptions_registered()
        if self.membership is not None:
            await self.membership.start()
            self.metrics.members.set(len(self.membership.members))
        await self.reconcile()
        self._tasks = [
            asyncio.create_task(self._interval_loop(), name="collector-interval"),
            asyncio.create_task(self._forward_loop(), name="collector-forward"),
        ]

    async def stop(self) -> None:
        """Stop fetching (unsubscribe), stop publishing, leave the members, stop every source."""
        for subscription in self._subscriptions:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()
        self._subscriptions = []
        for task in self._tasks:
            await cancel_and_wait(task)
        self._tasks = []
        if self.membership is not None:
            await self.membership.stop()
        for name in list(self._runners):
            await self._release(name)
        if self._http is not None:
            await self._http.close()
            self._http = None
        if self._push_bus is not None:
            await self._push_bus.close()
            self._push_bus = None
