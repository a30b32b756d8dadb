"""For applications: push custom metrics to the collector, and follow the decisions made about them.

Any NATS client in any language can push by publishing the JSON of :class:`shared.schemas.MetricPush`
on ``<prefix>.metrics.<target>`` (see ``docs/metrics-push.md``); these helpers do it for Python::

    nc = await nats.connect("nats://127.0.0.1:4222")
    await publish_metric(nc, "orders", "queue_depth", 42, labels={"queue": "incoming"})

    async def on_decision(decision: Decision) -> None:
        print(decision.target, decision.current_replicas, "->", decision.desired_replicas)

    subscription = await subscribe_decisions(nc, on_decision, target="orders")
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from shared.schemas import Decision, DecisionBatch, ExecutionResult, MetricPush
from shared.subjects import Subjects

log = logging.getLogger(__name__)

_encoder = msgspec.json.Encoder()
_batch_decoder = msgspec.json.Decoder(DecisionBatch)
_result_decoder = msgspec.json.Decoder(ExecutionResult)

DEFAULT_SUBJECTS = Subjects()


async def publish_metric(
    nc: NATS,
    target: str,
    name: str,
    value: float,
    *,
    labels: dict[str, str] | None = None,
    unit: str = "",
    timestamp: float | None = None,
    subjects: Subjects = DEFAULT_SUBJECTS,
) -> None:
    """Publish one custom metric sample of ``target`` (validated against the schema before sending).

    ``timestamp`` defaults to now.  Raises ``msgspec.ValidationError`` for an invalid target or name.
    """
    push = MetricPush(
        target=target,
        name=name,
        value=float(value),
        timestamp=time.time() if timestamp is None else timestamp,
        unit=unit,
        labels=dict(labels or {}),
    )
    await nc.publish(subjects.metrics(target), _encoder.encode(_validated(push)))


async def publish_metrics(
    nc: NATS, target: str, pushes: Iterable[MetricPush], subjects: Subjects = DEFAULT_SUBJECTS
) -> None:
    """Publish many samples of one target in a single message (a JSON array of MetricPush)."""
    batch = [_validated(push) for push in pushes]
    for push in batch:
        if push.target != target:
            raise ValueError(f"sample for target {push.target!r} in a batch for {target!r}")
    if batch:
        await nc.publish(subjects.metrics(target), _encoder.encode(batch))


def _validated(push: MetricPush) -> MetricPush:
    """Struct constructors do not check constraints; a round trip through the decoder does."""
    return msgspec.json.decode(_encoder.encode(push), type=MetricPush)


DecisionHandler = Callable[[Decision], Awaitable[None]]
ResultHandler = Callable[[ExecutionResult], Awaitable[None]]


async def subscribe_decisions(
    nc: NATS,
    handler: DecisionHandler,
    *,
    target: str | None = None,
    subjects: Subjects = DEFAULT_SUBJECTS,
) -> Subscription:
    """Call ``handler`` for every decision the decider publishes (only ``target``'s when given).

    Live events only (a core NATS subscription on the decisions subject); an undecodable
    message is logged and skipped.
    """

    async def on_message(msg: Msg) -> None:
        try:
            batch = _batch_decoder.decode(msg.data)
        except msgspec.DecodeError as exc:
            log.warning("skipping undecodable decision batch", extra={"error": str(exc)})
            return
        for decision in batch.decisions:
            if target is None or decision.target == target:
                await handler(decision)

    return await nc.subscribe(subjects.decisions, cb=on_message)


async def subscribe_results(
    nc: NATS,
    handler: ResultHandler,
    *,
    target: str | None = None,
    subjects: Subjects = DEFAULT_SUBJECTS,
) -> Subscription:
    """Call ``handler`` for every execution result of the actuator (only ``target``'s when given)."""

    async def on_message(msg: Msg) -> None:
        try:
            result = _result_decoder.decode(msg.data)
        except msgspec.DecodeError as exc:
            log.warning("skipping undecodable execution result", extra={"error": str(exc)})
            return
        await handler(result)

    subject = subjects.results(target) if target is not None else subjects.results_all
    return await nc.subscribe(subject, cb=on_message)
