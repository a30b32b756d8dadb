"""What `make run` prints: one line per executed scaling and a compact periodic status."""

from __future__ import annotations

import sys
import time
from collections import OrderedDict
from typing import TextIO

from shared.schemas import Decision, DecisionBatch, ExecutionResult, TargetStatus


class Console:
    """Turns bus events into human lines: ``web 1 → 3  (reason)`` and a status line."""

    def __init__(self, out: TextIO = sys.stdout, *, started: float | None = None, remembered: int = 1000) -> None:
        self._out = out
        self._started = time.monotonic() if started is None else started
        self._decisions: OrderedDict[str, Decision] = OrderedDict()
        self._remembered = remembered
        self._status: dict[str, TargetStatus] = {}
        self._desired: dict[str, int] = {}
        self.scale_ups = 0
        self.scale_downs = 0

    def _stamp(self) -> str:
        return f"[{time.monotonic() - self._started:6.1f}s]"

    def print(self, text: str) -> None:
        print(f"{self._stamp()} {text}", file=self._out, flush=True)

    def on_decisions(self, batch: DecisionBatch) -> None:
        for decision in batch.decisions:
            self._decisions[decision.id] = decision
            self._desired[decision.target] = decision.desired_replicas
        while len(self._decisions) > self._remembered:
            self._decisions.popitem(last=False)

    def on_status(self, status: TargetStatus) -> None:
        self._status[status.target] = status

    def on_result(self, result: ExecutionResult) -> None:
        decision = self._decisions.get(result.decision_id)
        why = decision.reason if decision else result.reason
        if decision and decision.message:
            why = f"{why}: {decision.message}"
        if result.status == "failed":
            self.print(f"{result.target} ✗ {result.requested_replicas}  (failed: {result.error or result.reason})")
            return
        if result.status != "applied" or result.previous_replicas == result.resulting_replicas:
            return
        old, new = result.previous_replicas, result.resulting_replicas
        if old is not None and new is not None:
            if new > old:
                self.scale_ups += 1
            else:
                self.scale_downs += 1
        dry = " [dry-run]" if result.dry_run else ""
        self.print(f"{result.target} {old} → {new}  ({why}){dry}")

    def status_line(self, *, rate: float, sent: int, failed: int) -> None:
        parts = [f"load {rate:5.1f} req/s (sent {sent}, failed {failed})"]
        for target, status in sorted(self._status.items()):
            desired = self._desired.get(target, status.spec_replicas)
            parts.append(
                f"{target}: {status.ready_replicas}/{status.current_replicas} ready, desired {desired}"
                + (" [paused]" if status.paused else "")
                + ("" if status.breaker == "closed" else f" [breaker {status.breaker}]")
            )
        self.print(" | ".join(parts))
