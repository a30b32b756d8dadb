"""Issue 5's "done when": a raw NATS client publishing the documented JSON produces a snapshot and then a decision.

Real processes: the collector and the decider run as `python -m services.<svc>.main`, on a real
nats-server; the test plays the application (a plain nats-py client, no scalebus code) and the
actuator (publishing the target's TargetStatus).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
from pathlib import Path

import msgspec
import nats
import yaml

from shared.bus import Bus
from shared.config import BusConfig
from shared.schemas import Decision, DecisionBatch, TargetStatus

from .conftest import ServiceStarter, SnapshotListener

POLICY = {
    "apiVersion": "scalebus.dev/v1",
    "kind": "ScalingPolicy",
    "metadata": {"name": "orders"},
    "spec": {
        "scaleTargetRef": {"name": "orders"},
        "minReplicas": 1,
        "maxReplicas": 20,
        "metrics": [
            {
                "type": "External",
                "external": {
                    "metric": {"name": "queue_depth"},
                    "target": {"type": "AverageValue", "averageValue": "5"},
                },
            }
        ],
    },
}


def saw_the_push(decision: Decision) -> bool:
    """The decision was made on a valid `queue_depth` (not on the status alone, before any snapshot arrived)."""
    return decision.explanation is not None and any(m.proposal is not None for m in decision.explanation.inputs)


async def test_a_raw_nats_push_produces_a_snapshot_and_then_a_decision(
    bus: Bus, bus_config: BusConfig, snapshots: SnapshotListener, tmp_path: Path, start_service: ServiceStarter
) -> None:
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "orders.yaml").write_text(yaml.safe_dump(POLICY))
    (tmp_path / "decider.yaml").write_text(
        yaml.safe_dump({"policies_dir": "policies", "tick_interval_seconds": 0.5, "persist_state": False})
    )
    (tmp_path / "collector.yaml").write_text(yaml.safe_dump({"snapshot_interval_seconds": 0.5}))

    batches: asyncio.Queue[DecisionBatch] = asyncio.Queue()
    decoder = msgspec.json.Decoder(DecisionBatch)

    async def on_batch(msg: object) -> None:
        batches.put_nowait(decoder.decode(msg.data))  # type: ignore[attr-defined]

    await bus.nc.subscribe(bus.subjects.decisions, cb=on_batch)
    await bus.nc.flush()

    async def actuator_status() -> None:
        while True:  # the actuator's role: the target runs 2 replicas
            status = TargetStatus(
                target="orders",
                backend="local",
                spec_replicas=2,
                current_replicas=2,
                ready_replicas=2,
                observed_at=time.time(),
            )
            await bus.publish(bus.subjects.status("orders"), status)
            await asyncio.sleep(0.5)

    status_task = asyncio.create_task(actuator_status())
    processes = []
    for service in ("collector", "decider"):
        with (tmp_path / f"{service}.log").open("wb") as log:
            processes.append(
                await start_service(
                    service,
                    tmp_path / f"{service}.yaml",
                    bus_config.url,
                    stdout=asyncio.subprocess.DEVNULL,
                    stderr=log.fileno(),
                )
            )
    try:
        application = await nats.connect(bus_config.url)
        try:
            document = {"kind": "metric_push", "target": "orders", "name": "queue_depth", "value": 50}
            for _ in range(60):  # bounded: until the collector is up and forwards it (at most ~30 s)
                await application.publish("scalebus.metrics.orders", json.dumps(document).encode())
                await application.flush()
                if any(s.target == "orders" for s in snapshots.snapshots):
                    break
                await asyncio.sleep(0.5)
        finally:
            await application.close()
        snapshot = await snapshots.wait_for(lambda s: s.target == "orders", within=5.0)
        assert [(s.name, s.value, s.source) for s in snapshot.samples] == [("queue_depth", 50.0, "push")]

        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30.0
        decision = None
        while decision is None:  # the first decision on the pushed value (one on the status alone may come first)
            batch = await asyncio.wait_for(batches.get(), timeout=max(0.1, deadline - loop.time()))
            decision = next((d for d in batch.decisions if d.target == "orders" and saw_the_push(d)), None)
        # 50 queued jobs at an average of 5 per replica: 10 replicas, capped by HPA's default
        # scale-up limit of max(2 x current, 4) = 4 for this step.
        assert decision.explanation is not None and decision.explanation.raw_recommendation == 10, decision
        assert (decision.current_replicas, decision.desired_replicas, decision.reason) == (2, 4, "ScaleUpLimit")
    finally:
        status_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await status_task
        for process in processes:
            process.send_signal(signal.SIGTERM)
        codes = [await asyncio.wait_for(process.wait(), timeout=15.0) for process in processes]
    assert codes == [0, 0], [(tmp_path / f"{svc}.log").read_text()[-2000:] for svc in ("collector", "decider")]
