"""``scalebus simulate`` replays the example traces of docs/examples through the engine, offline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from services.decider.simulate import main

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"
NAMES = sorted(p.name.removesuffix(".trace.jsonl") for p in EXAMPLES.glob("*.trace.jsonl"))


def replay(name: str, capsys: pytest.CaptureFixture[str], *extra: str) -> list[dict[str, Any]]:
    code = main(["--policy", str(EXAMPLES / f"{name}.yaml"), "--trace", str(EXAMPLES / f"{name}.trace.jsonl"), *extra])
    assert code == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_every_example_trace_has_its_policy_and_replays_one_line_per_step(capsys: pytest.CaptureFixture[str]) -> None:
    assert len(NAMES) >= 5
    for name in NAMES:
        steps = (EXAMPLES / f"{name}.trace.jsonl").read_text().splitlines()
        out = replay(name, capsys)
        assert len(out) == len(steps)
        for line in out:
            assert {"time", "target", "current", "desired", "reason", "winner", "raw", "adjustments"} <= set(line)


def test_web_scales_up_with_the_load_and_down_after_the_stabilization_window(
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = replay("web-hpa", capsys)
    peak = max(line["desired"] for line in out)
    assert peak == 8
    assert out[-1]["desired"] == 1
    assert "ScaleDownStabilized" in {line["reason"] for line in out}


def test_a_pasted_hpa_without_behavior_is_capped_at_max_of_twice_current_and_four(
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = replay("cpu-hpa", capsys)
    ups = [(line["current"], line["desired"], line["reason"]) for line in out if line["desired"] > line["current"]]
    assert ups[:2] == [(1, 4, "ScaleUpLimit"), (4, 8, "ScaleUpLimit")]
    assert out[-1]["desired"] == 1


def test_the_queue_worker_goes_to_zero_after_the_cooldown_and_wakes_up_on_work(
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = replay("queue-scale-to-zero", capsys)
    reasons = [line["reason"] for line in out]
    assert "ScaleToZero" in reasons and "ActivatedFromZero" in reasons
    assert reasons.index("ScaleToZero") < reasons.index("ActivatedFromZero")
    zero_at = next(line["time"] for line in out if line["reason"] == "ScaleToZero")
    last_work = max(line["time"] for line in out if line["time"] < zero_at and line["load"] > 0)
    assert zero_at - last_work >= 120


def test_checkout_rules_fire_by_priority_and_scale_down_only_after_a_quiet_period(
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = replay("checkout-rules", capsys)
    winners = [line["winner"] for line in out if line["desired"] != line["current"]]
    assert winners[0] == "rule emergency (+2)"
    assert "rule gentle (+1)" in winners and "rule quiet (-1)" in winners
    first_down = next(line["time"] for line in out if line["desired"] < line["current"])
    quiet_since = 600
    assert first_down - quiet_since >= 600


def test_the_burst_is_caught_in_the_panic_window_and_never_shrinks_while_panicking(
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = replay("burst-panic", capsys)
    panic = [line["desired"] for line in out if 60 <= line["time"] < 120]
    assert panic == sorted(panic)
    assert max(panic) == 25


def test_plot_writes_a_png_of_load_and_replicas(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    picture = tmp_path / "web.png"
    replay("web-hpa", capsys, "--plot", str(picture))
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_broken_policy_or_trace_is_reported_with_exit_code_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bad_policy = tmp_path / "bad.yaml"
    bad_policy.write_text("apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {name: x}\n")
    assert main(["--policy", str(bad_policy), "--trace", str(EXAMPLES / "web-hpa.trace.jsonl")]) == 2
    assert "spec" in capsys.readouterr().err
    bad_trace = tmp_path / "bad.jsonl"
    bad_trace.write_text('{"time": 0, "replicas": "two"}\n')
    assert main(["--policy", str(EXAMPLES / "web-hpa.yaml"), "--trace", str(bad_trace)]) == 2
    assert "bad.jsonl:1" in capsys.readouterr().err
