"""`make run` prints one line per executed scaling: `<target> <old> → <new>  (<reason>)`."""

from __future__ import annotations

import io

from scalebus.demo.console import Console
from shared.schemas import Decision, DecisionBatch, ExecutionResult, TargetStatus


def decision(decision_id: str, current: int, desired: int) -> Decision:
    return Decision(
        id=decision_id,
        target="web",
        current_replicas=current,
        desired_replicas=desired,
        reason="ScaleUp" if desired > current else "ScaleDown",
        message="demo_requests_per_second 14/5 per pod",
        decided_at=0,
    )


def result(decision_id: str, status: str, old: int | None, new: int | None, **extra: object) -> ExecutionResult:
    return ExecutionResult(
        decision_id=decision_id,
        target="web",
        status=status,  # type: ignore[arg-type]
        previous_replicas=old,
        requested_replicas=new,
        resulting_replicas=new,
        executed_at=0,
        **extra,  # type: ignore[arg-type]
    )


def test_an_applied_change_prints_one_line_with_the_decisions_reason() -> None:
    out = io.StringIO()
    console = Console(out)
    console.on_decisions(
        DecisionBatch(batch_id="b", decider="d", tick=1, decided_at=0, decisions=(decision("1", 1, 3),))
    )
    console.on_result(result("1", "applied", 1, 3))
    line = out.getvalue().strip()
    assert line.endswith("web 1 → 3  (ScaleUp: demo_requests_per_second 14/5 per pod)")
    assert console.scale_ups == 1


def test_a_scale_down_is_counted_and_skips_are_quiet() -> None:
    out = io.StringIO()
    console = Console(out)
    console.on_result(result("2", "applied", 4, 2, reason="applied"))
    console.on_result(result("3", "skipped", 2, 2, reason="duplicate decision"))
    assert out.getvalue().count("\n") == 1
    assert "web 4 → 2  (applied)" in out.getvalue()
    assert console.scale_downs == 1


def test_a_failure_is_shown_with_its_error() -> None:
    out = io.StringIO()
    Console(out).on_result(result("4", "failed", 2, 5, error="breaker open"))
    assert "web ✗ 5  (failed: breaker open)" in out.getvalue()


def test_the_status_line_shows_load_and_replicas() -> None:
    out = io.StringIO()
    console = Console(out)
    console.on_status(
        TargetStatus(
            target="web", backend="local", spec_replicas=3, current_replicas=3, ready_replicas=2, observed_at=0
        )
    )
    console.status_line(rate=12.5, sent=100, failed=0)
    assert "load  12.5 req/s (sent 100, failed 0) | web: 2/3 ready, desired 3" in out.getvalue()
