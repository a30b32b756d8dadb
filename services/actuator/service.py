"""The actuator service: consumes decision batches, executes them safely, reports results and status."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import uuid
from pathlib import Path
from typing import Protocol

from nats.aio.msg import Msg
from nats.errors import NotJSMessageError
from nats.js.errors import NotFoundError

from services.actuator.backends.base import Backend
from services.actuator.backends.local import LocalBackend
from services.actuator.breaker import CircuitBreaker
from services.actuator.config import (
    ActuatorConfig,
    KubernetesBackendConfig,
    LocalBackendConfig,
    TargetConfig,
    validate_actuator_config,
)
from services.actuator.executor import Executor, TargetRuntime
from services.actuator.idempotency import DryRunIdempotencyStore, IdempotencyStore, KvIdempotencyStore
from services.actuator.intake import IncomingBatch
from services.actuator.kv import open_bucket
from services.actuator.lease import LeaseManager
from services.actuator.metrics import ActuatorMetrics
from services.actuator.status import StatusPublisher
from shared.codec import MessageDecoder
from shared.lifecycle import Runtime
from shared.schemas import Alert, ExecutionResult, TargetStatus
from shared.tasks import cancel_and_wait

log = logging.getLogger(__name__)

_TARGET_SUBJECT_TOKEN = re.compile(r"^[a-z0-9]([a-z0-9_-]{0,61}[a-z0-9])?(/[a-z0-9]([a-z0-9_-]{0,61}[a-z0-9])?)?$")
APPLIED_RETENTION_SECONDS = 7 * 86400.0
"""How long decision ids are remembered (far longer than the decisions stream keeps them)."""


class _Closable(Protocol):
    async def close(self) -> None: ...


class ActuatorService:
    """Wires backends, safety and the bus together; ``start``/``stop`` for the lifecycle."""

    def __init__(self, config: ActuatorConfig, runtime: Runtime, base_dir: Path) -> None:
        self._config = config
        self._runtime = runtime
        self._base_dir = base_dir
        self._bus = runtime.bus
        self._clock = runtime.clock
        self.metrics = ActuatorMetrics(runtime.registry, "scalebus")
        self.targets: dict[str, TargetRuntime] = {}
        self.leases: LeaseManager | None = None
        self.executor: Executor | None = None
        self.status: StatusPublisher | None = None
        self._kubernetes: _Closable | None = None
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._consumer: asyncio.Task[None] | None = None
        self._decoder: MessageDecoder[IncomingBatch] = MessageDecoder(IncomingBatch)

    async def start(self) -> None:
        config = self._config
        subjects = self._bus.subjects
        await self._bus.ensure_core_streams()
        store: IdempotencyStore
        if config.dry_run:
            # Dry-run writes nothing, not even a bucket: it reads the real one when it exists.
            try:
                existing: IdempotencyStore | None = KvIdempotencyStore(
                    await self._bus.js.key_value(subjects.bucket_name("actuator_applied"))
                )
            except NotFoundError:
                existing = None
            store = DryRunIdempotencyStore(existing)
        else:
            applied = await open_bucket(
                self._bus.js,
                subjects.bucket_name("actuator_applied"),
                ttl=APPLIED_RETENTION_SECONDS,
                description="decision ids the actuator has executed (idempotency)",
            )
            store = KvIdempotencyStore(applied)
            lease_kv = await open_bucket(
                self._bus.js, subjects.bucket_name("actuator_leases"), description="per-target actuator leases"
            )
            self.leases = LeaseManager(
                lease_kv,
                holder=lease_holder(self._runtime.instance),
                ttl=config.safety.lease.ttl_seconds,
                clock=self._clock,
            )
        for target in config.targets:
            backend = await self._build_backend(target)
            breaker = CircuitBreaker(
                failure_threshold=config.safety.breaker.failure_threshold,
                open_seconds=config.safety.breaker.open_seconds,
                clock=self._clock,
            )
            self.targets[target.name] = TargetRuntime(config=target, backend=backend, breaker=breaker)
            self.metrics.set_breaker_state(target.name, "closed")
        self.status = StatusPublisher(
            self.targets,
            self._publish_status,
            interval=config.status_interval_seconds,
            poll=config.status_poll_seconds,
            clock=self._clock,
            metrics=self.metrics,
        )
        self.executor = Executor(
            config=config,
            targets=self.targets,
            idempotency=store,
            leases=self.leases,
            metrics=self.metrics,
            clock=self._clock,
            instance=self._runtime.instance,
            publish_result=self._publish_result,
            publish_alert=self._publish_alert,
            on_change=self.status.poke,
        )
        started: list[Backend] = []
        try:
            for runtime in self.targets.values():
                await runtime.backend.start()
                started.append(runtime.backend)
        except Exception:
            for backend in started:
                with contextlib.suppress(Exception):
                    await backend.stop()
            raise
        self._tasks.append(asyncio.create_task(self.status.run(self._stop), name="actuator-status"))
        if self.leases is not None:
            self._tasks.append(asyncio.create_task(self._renew_leases(), name="actuator-leases"))
        self._consumer = asyncio.create_task(
            self._bus.consume(
                subjects.decisions,
                config.consumer.durable,
                self._decoder,
                self._on_batch,
                stream=subjects.stream_name("decisions"),
                stop=self._stop,
                batch=config.consumer.batch,
                ack_wait=config.consumer.ack_wait_seconds,
                max_deliver=config.consumer.max_deliver,
            ),
            name="actuator-consume",
        )
        log.info(
            "actuator started",
            extra={"targets": sorted(self.targets), "dry_run": config.dry_run, "durable": config.consumer.durable},
        )

    async def stop(self) -> None:
        """Stop fetching, finish the batch in flight, release leases, stop every replica we started."""
        self._stop.set()
        consumer = self._consumer
        if consumer is not None:
            try:
                await asyncio.wait_for(consumer, timeout=self._config.service.shutdown_deadline_seconds / 2)
            except TimeoutError:
                log.warning("decision consumer did not finish in time")
            except Exception:
                log.exception("decision consumer failed")
        await asyncio.gather(*(cancel_and_wait(task) for task in self._tasks))
        self._tasks.clear()
        if self.leases is not None:
            await self.leases.release_all()
        await asyncio.gather(*(rt.backend.stop() for rt in self.targets.values()), return_exceptions=True)
        if self._kubernetes is not None:
            with contextlib.suppress(Exception):
                await self._kubernetes.close()
        log.info("actuator stopped")

    # -- wiring -------------------------------------------------------------------------------

    async def _build_backend(self, target: TargetConfig) -> Backend:
        backend = target.backend
        if isinstance(backend, LocalBackendConfig):
            return LocalBackend(target.name, backend, base_dir=self._base_dir, clock=self._clock)
        if isinstance(backend, KubernetesBackendConfig):
            from services.actuator.backends.kubernetes import KubernetesBackend, KubernetesSession

            if self._kubernetes is None:
                self._kubernetes = await KubernetesSession.open(self._config.kubernetes, base_dir=self._base_dir)
            assert isinstance(self._kubernetes, KubernetesSession)
            return KubernetesBackend(target.name, backend, self._kubernetes, clock=self._clock)
        raise TypeError(f"unsupported backend {type(backend).__name__}")

    async def _on_batch(self, batch: IncomingBatch, msg: Msg) -> None:
        assert self.executor is not None
        heartbeat = asyncio.create_task(self._keep_in_progress(msg), name="actuator-batch-heartbeat")
        try:
            await self.executor.handle_batch(batch, last_delivery=self._last_delivery(msg))
        finally:
            await cancel_and_wait(heartbeat)

    async def _keep_in_progress(self, msg: Msg) -> None:
        """A batch can take longer than ack_wait (retries, slow API): tell JetStream it is still being worked on,
        or it hands the batch to another instance meanwhile."""
        while True:
            await asyncio.sleep(self._config.consumer.ack_wait_seconds / 3)
            try:
                await msg.in_progress()
            except Exception as exc:  # the next beat tries again; at worst the batch is redelivered
                log.warning("could not extend the batch's ack deadline", extra={"error": repr(exc)})

    def _last_delivery(self, msg: Msg) -> bool:
        """True when JetStream will not deliver this message again if it is put back."""
        try:
            delivered = msg.metadata.num_delivered
        except NotJSMessageError:  # not from a JetStream consumer: nothing is redelivered anyway
            return False
        return delivered >= self._config.consumer.max_deliver

    async def _renew_leases(self) -> None:
        assert self.leases is not None
        while True:
            await asyncio.sleep(self._config.safety.lease.renew_interval_seconds)
            await self.leases.renew_all()

    async def _publish_result(self, result: ExecutionResult) -> None:
        target = result.target if _TARGET_SUBJECT_TOKEN.match(result.target) else "_invalid"
        subject = self._bus.subjects.results(target)
        await self._bus.publish_persistent(subject, result, msg_id=f"result-{result.decision_id}")

    async def _publish_status(self, status: TargetStatus) -> None:
        await self._bus.publish(self._bus.subjects.status(status.target), status)

    async def _publish_alert(self, alert: Alert) -> None:
        await self._bus.publish(self._bus.subjects.alerts("actuator"), alert)


async def build(config: ActuatorConfig, runtime: Runtime, config_path: Path) -> ActuatorService:
    validate_actuator_config(config, file=str(config_path))
    return ActuatorService(config, runtime, config_directory(config_path))


def lease_holder(instance: str) -> str:
    """A holder name unique to this process: two processes configured with the same instance name
    must still not share a lease.  (A crashed instance's lease therefore lapses after its TTL.)"""
    return f"{instance}#{uuid.uuid4().hex[:8]}"


def config_directory(config_path: Path) -> Path:
    """Relative paths in a config file resolve against the file's directory."""
    return Path(os.path.abspath(config_path)).parent
