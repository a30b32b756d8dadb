"""The walking skeleton: `scalebus run` (what `make run` starts) closes the whole loop on one machine.

Load rises, the collector's snapshots reach the decider over a real nats-server, the actuator
changes the number of real replica processes; load falls and replicas fall. SIGINT stops
everything: exit code 0, no orphan process, temp dirs removed.
"""

from __future__ import annotations

import asyncio
import re
import signal
import sys
import time
from pathlib import Path

import psutil

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "local"
SCALE_LINE = re.compile(r"\] web (\d+) → (\d+)  \((.+)\)")


def demo_config(tmp_path: Path) -> Path:
    """The shipped demo, with a shorter load cycle so a test sees up and down quickly."""
    config = tmp_path / "demo.yaml"
    config.write_text(
        f"target: web\n"
        f"collector: {DEPLOY / 'collector.yaml'}\n"
        f"decider: {DEPLOY / 'decider.yaml'}\n"
        f"actuator: {DEPLOY / 'actuator.yaml'}\n"
        "status_interval_seconds: 2\n"
        "load:\n  base_rps: 2\n  peak_rps: 25\n  base_seconds: 2\n  ramp_up_seconds: 8\n  hold_seconds: 15\n"
        "  ramp_down_seconds: 5\n  idle_seconds: 60\n  cycles: 1\n"
    )
    return config


def replicas_of(pid: int) -> dict[int, psutil.Process]:
    """The demo workload replicas below process ``pid`` (started by its actuator)."""
    found = {}
    try:
        for child in psutil.Process(pid).children(recursive=True):
            try:
                if "scalebus.demo.workload" in child.cmdline():
                    found[child.pid] = child
            except psutil.Error:
                continue
    except psutil.Error:
        pass
    return found


async def test_load_scales_the_demo_up_and_down_and_sigint_stops_everything(tmp_path: Path) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "scalebus.cli",
        "run",
        "--config",
        str(demo_config(tmp_path)),
        "--logs",
        str(tmp_path / "logs"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert process.stdout is not None
    lines: list[str] = []
    ups: list[tuple[int, int]] = []
    downs: list[tuple[int, int]] = []
    store = ""
    seen_replicas: dict[int, psutil.Process] = {}
    deadline = time.monotonic() + 100
    try:
        while time.monotonic() < deadline and not (ups and downs):
            raw = await asyncio.wait_for(process.stdout.readline(), timeout=max(1.0, deadline - time.monotonic()))
            if not raw:
                break
            line = raw.decode().rstrip()
            lines.append(line)
            if "JetStream store in " in line:
                store = line.split("JetStream store in ")[1].rstrip(")")
            seen_replicas.update(replicas_of(process.pid))
            match = SCALE_LINE.search(line)
            if match:
                old, new = int(match.group(1)), int(match.group(2))
                (ups if new > old else downs).append((old, new))
        assert ups, "no scale-up within 100 s:\n" + "\n".join(lines)
        assert downs, "no scale-down within 100 s:\n" + "\n".join(lines)
        assert max(new for _, new in ups) >= 3, ups
        assert len(seen_replicas) >= 3, seen_replicas
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGINT)
        started = time.monotonic()
        rest, _ = await asyncio.wait_for(process.communicate(), timeout=30)
        stopped_in = time.monotonic() - started
    output = "\n".join(lines) + rest.decode()
    assert process.returncode == 0, output
    assert stopped_in < 15, output
    assert "stopped:" in output
    leftover = [p for p in seen_replicas.values() if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert leftover == [], f"orphan replicas: {leftover}"
    assert store and not Path(store).exists(), f"temp dir left behind: {store}"
    for log in ("collector.log", "decider.log", "actuator.log"):
        assert '"msg": "stopped"' in (tmp_path / "logs" / log).read_text(), log
