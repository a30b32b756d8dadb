"""The safety pieces on their own: bounds and step, rate limit, backoff, breaker, lenient intake, dry-run memory."""

from __future__ import annotations

import random
import time

import msgspec
import pytest

from services.actuator.backends.base import PermanentBackendError, TransientBackendError
from services.actuator.breaker import CircuitBreaker
from services.actuator.config import RetryConfig
from services.actuator.idempotency import AppliedRecord, Claimed, DryRunIdempotencyStore
from services.actuator.intake import IncomingBatch
from services.actuator.kv import kv_key
from services.actuator.ratelimit import ChangeRateLimiter, plan_change
from services.actuator.retry import backoff_delay, call_with_retry
from shared.clock import ManualClock
from shared.codec import MessageDecoder, encode
from shared.errors import MalformedMessage
from shared.schemas import Decision, DecisionBatch


@pytest.mark.parametrize(
    ("current", "desired", "expected", "note"),
    [
        (1, 3, 3, ""),
        (1, 20, 5, "step limited to 4"),
        (2, 9, 6, "clamped to max_replicas 8"),
        (6, 0, 2, "clamped to min_replicas 1"),
        (5, 1, 1, ""),
        (12, 10, 8, "clamped to max_replicas 8"),
        (0, 3, 3, ""),
    ],
)
def test_a_plan_stays_within_bounds_and_moves_at_most_max_step(
    current: int, desired: int, expected: int, note: str
) -> None:
    plan = plan_change(current=current, desired=desired, min_replicas=1, max_replicas=8, max_step=4)
    assert plan.replicas == expected
    assert 1 <= plan.replicas <= 8
    if note:
        assert any(note in n for n in plan.notes)
    else:
        assert plan.notes == ()


def test_a_target_outside_its_bounds_is_brought_inside_even_beyond_the_step_limit() -> None:
    plan = plan_change(current=20, desired=20, min_replicas=1, max_replicas=8, max_step=2)
    assert plan.replicas == 8


def test_the_rate_limiter_allows_one_change_per_interval_per_target() -> None:
    clock = ManualClock()
    limiter = ChangeRateLimiter(clock)
    assert limiter.wait_needed("web", 5.0) == 0.0
    limiter.record_change("web")
    clock.advance(2.0)
    assert limiter.wait_needed("web", 5.0) == pytest.approx(3.0)
    assert limiter.wait_needed("api", 5.0) == 0.0, "targets are limited independently"
    clock.advance(3.0)
    assert limiter.wait_needed("web", 5.0) == 0.0


def test_backoff_grows_exponentially_with_jitter_and_is_capped() -> None:
    policy = RetryConfig(attempts=10, base_delay_seconds=0.1, max_delay_seconds=1.0)
    rng = random.Random(7)
    for attempt, ceiling in [(0, 0.1), (1, 0.2), (2, 0.4), (3, 0.8), (4, 1.0), (8, 1.0)]:
        delays = {backoff_delay(attempt, policy, rng) for _ in range(50)}
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(delays) > 1, "jittered, not fixed"


async def test_transient_errors_are_retried_with_backoff_until_success() -> None:
    calls: list[int] = []
    slept: list[float] = []

    async def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise TransientBackendError("503 from the API server", status=503)
        return "done"

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    policy = RetryConfig(attempts=4, base_delay_seconds=0.2, max_delay_seconds=5.0)
    assert await call_with_retry(flaky, policy, rng=random.Random(1), sleep=sleep) == "done"
    assert len(calls) == 3
    assert 0.1 <= slept[0] <= 0.2 and 0.2 <= slept[1] <= 0.4


async def test_permanent_errors_are_not_retried_and_transient_ones_give_up_after_the_attempts() -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    async def forbidden() -> None:
        raise PermanentBackendError("forbidden", status=403)

    with pytest.raises(PermanentBackendError):
        await call_with_retry(forbidden, RetryConfig(attempts=5), rng=random.Random(1), sleep=sleep)
    assert slept == []

    attempts: list[int] = []

    async def always_down() -> None:
        attempts.append(1)
        raise TransientBackendError("timeout")

    with pytest.raises(TransientBackendError):
        await call_with_retry(always_down, RetryConfig(attempts=3), rng=random.Random(1), sleep=sleep)
    assert len(attempts) == 3 and len(slept) == 2


def test_the_breaker_opens_after_three_consecutive_failures_and_half_opens_after_the_delay() -> None:
    clock = ManualClock()
    breaker = CircuitBreaker(failure_threshold=3, open_seconds=30.0, clock=clock)
    assert breaker.allow() and not breaker.record_failure()
    assert breaker.allow() and not breaker.record_failure()
    assert breaker.allow() and breaker.record_failure(), "the third consecutive failure opens it"
    assert breaker.state == "open" and not breaker.allow()

    clock.advance(29.9)
    assert not breaker.allow()
    clock.advance(0.2)
    assert breaker.state == "half_open"
    assert breaker.allow(), "one trial goes through"
    assert not breaker.allow(), "and only one at a time"
    assert breaker.record_failure(), "a failed trial opens it again"
    assert breaker.state == "open"

    clock.advance(30.0)
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state == "closed" and breaker.consecutive_failures == 0


def test_a_success_resets_the_count_of_consecutive_failures() -> None:
    breaker = CircuitBreaker(failure_threshold=3, open_seconds=30.0, clock=ManualClock())
    breaker.record_failure()
    breaker.record_failure()
    breaker.record_success()
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.state == "closed"


def test_the_actuator_reads_every_valid_decision_batch_and_judges_decisions_one_by_one() -> None:
    wire = DecisionBatch(
        batch_id="b",
        decider="d",
        tick=3,
        decided_at=time.time(),
        decisions=(Decision(id="x", target="web", current_replicas=1, desired_replicas=4, reason="r", decided_at=1.0),),
    )
    batch = MessageDecoder[IncomingBatch](IncomingBatch).decode(encode(wire))
    assert batch.batch_id == "b" and batch.decisions[0].desired_replicas == 4

    lenient = msgspec.json.encode(
        {
            "kind": "decision_batch",
            "batch_id": "b",
            "decisions": [
                {"id": "n", "target": "Not A Target", "current_replicas": 1, "desired_replicas": -1, "decided_at": 1.0}
            ],
        }
    )
    assert MessageDecoder[IncomingBatch](IncomingBatch).decode(lenient).decisions[0].desired_replicas == -1
    with pytest.raises(MalformedMessage):
        MessageDecoder[IncomingBatch](IncomingBatch).decode(b'{"kind": "metric_snapshot", "target": "web"}')


def test_kv_keys_are_the_id_itself_when_plain_and_a_digest_otherwise() -> None:
    assert kv_key("0f3a-web_1") == "0f3a-web_1"
    hashed = kv_key("ns/web.decision 7")
    assert hashed.startswith("h-") and hashed == kv_key("ns/web.decision 7")
    assert hashed != kv_key("ns/web.decision 8")


async def test_a_dry_run_remembers_its_newest_decisions_only() -> None:
    store = DryRunIdempotencyStore(None, capacity=3)
    for n in range(5):
        claim = await store.claim(f"d{n}", actuator="dry", at=float(n))
        assert isinstance(claim, Claimed)
        await store.complete(
            f"d{n}", claim, AppliedRecord(decision_id=f"d{n}", state="done", actuator="dry", claimed_at=n)
        )
    assert [await store.lookup(f"d{n}") is not None for n in range(5)] == [False, False, True, True, True]
    assert isinstance(await store.claim("d4", actuator="dry", at=9.0), AppliedRecord), "a remembered id stays claimed"
