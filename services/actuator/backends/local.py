"""The local backend: a target's replicas are copies of one command, run as OS processes.

Each replica runs in its own process group (so a stop reaches its children too) and, on Linux,
asks the kernel to SIGTERM it if the actuator dies (no orphans even after a SIGKILL).  A replica
is ready while ``GET http://127.0.0.1:<port><health_path>`` answers 200.  Stopping sends SIGTERM
to the group, then SIGKILL after the grace period.  A replica that exits on its own is restarted
with exponential backoff, on a fresh port.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Literal

import aiohttp

from services.actuator.backends.base import Observed, PermanentBackendError, TransientBackendError
from services.actuator.config import LocalBackendConfig
from shared.clock import Clock
from shared.natsserver import free_port
from shared.schemas import ReplicaStatus

log = logging.getLogger(__name__)

Phase = Literal["Pending", "Running", "Succeeded", "Failed", "Terminating"]

_PR_SET_PDEATHSIG = 1
_STABLE_RUN_SECONDS = 10.0
"""A replica that ran this long before crashing restarts after the first delay again."""


def _parent_death_signal_setter() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    """``prctl`` looked up once in the parent (the child after fork must not load libraries)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _parent_death_signal_setter()


def _die_with_parent() -> None:
    """Runs in the child between fork and exec: SIGTERM me when the actuator dies."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)


def substitute(template: str, *, python: str, port: int, name: str) -> str:
    """Replace ``{python}``, ``{port}`` and ``{name}`` (other braces are left alone)."""
    return template.replace("{python}", python).replace("{port}", str(port)).replace("{name}", name)


class _Replica:
    """One supervised copy of the command."""

    def __init__(self, name: str, index: int) -> None:
        self.name = name
        self.index = index
        self.port = 0
        self.process: asyncio.subprocess.Process | None = None
        self.phase: Phase = "Pending"
        self.ready = False
        self.started_at = 0.0
        self.ready_changed_at = 0.0
        self.restarts = 0
        self.stopping = False
        self.supervisor: asyncio.Task[None] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}" if self.port else ""

    def status(self) -> ReplicaStatus:
        return ReplicaStatus(
            name=self.name,
            phase=self.phase,
            ready=self.ready,
            started_at=self.started_at,
            ready_changed_at=self.ready_changed_at,
            endpoint=self.endpoint,
            pid=self.process.pid if self.process is not None and self.process.returncode is None else 0,
        )


class LocalBackend:
    """Supervises N copies of a command for one target."""

    kind = "local"
    endpoint = "local"
    success_status: int | None = None

    def __init__(self, target: str, config: LocalBackendConfig, *, base_dir: Path, clock: Clock) -> None:
        self._target = target
        self._config = config
        self._clock = clock
        self._cwd = str((base_dir / config.working_dir).resolve()) if config.working_dir else None
        self._spec = 0
        self._replicas: list[_Replica] = []
        self._lock = asyncio.Lock()
        self._stoppers: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None
        self._closed = False
        self.changed = asyncio.Event()

    # -- Backend protocol ---------------------------------------------------------------------

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self._config.health_timeout_seconds))
        if self._config.initial_replicas:
            await self.scale(self._config.initial_replicas)

    async def stop(self) -> None:
        """Stop every replica (SIGTERM, then SIGKILL after the grace period) and wait for all of them."""
        async with self._lock:
            self._closed = True
            self._spec = 0
            for replica in self._replicas:
                if not replica.stopping:
                    self._begin_stop(replica)
        while self._stoppers:
            await asyncio.gather(*list(self._stoppers), return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def read(self) -> Observed:
        return self._observe()

    async def scale(self, replicas: int) -> Observed:
        if replicas < 0:
            raise PermanentBackendError(f"cannot run {replicas} replicas")
        async with self._lock:
            if self._closed:
                raise TransientBackendError("the local backend is stopping")
            live = [r for r in self._replicas if not r.stopping]
            if replicas > len(live):
                for _ in range(replicas - len(live)):
                    await self._add_replica()
            elif replicas < len(live):
                # Unready replicas go first, then the newest: what a ReplicaSet would pick.
                victims = sorted(live, key=lambda r: (r.ready, -r.index))[: len(live) - replicas]
                for replica in victims:
                    self._begin_stop(replica)
            self._spec = replicas
        self.changed.set()
        return self._observe()

    # -- replicas -----------------------------------------------------------------------------

    def _observe(self) -> Observed:
        live = [r for r in self._replicas if not r.stopping]
        return Observed(
            spec_replicas=self._spec,
            current_replicas=len(live),
            ready_replicas=sum(1 for r in live if r.ready),
            replicas=tuple(r.status() for r in sorted(self._replicas, key=lambda r: r.index)),
        )

    async def _add_replica(self) -> None:
        used = {r.index for r in self._replicas}
        index = next(i for i in range(len(used) + 1) if i not in used)
        replica = _Replica(f"{self._target.replace('/', '-')}-{index}", index)
        try:
            await self._spawn(replica)
        except OSError as exc:
            raise PermanentBackendError(f"cannot start {replica.name}: {exc}") from exc
        self._replicas.append(replica)
        replica.supervisor = asyncio.create_task(self._supervise(replica), name=f"supervise-{replica.name}")

    async def _spawn(self, replica: _Replica) -> None:
        replica.port = free_port()
        python = sys.executable

        def fill(template: str) -> str:
            return substitute(template, python=python, port=replica.port, name=replica.name)

        argv = [fill(arg) for arg in self._config.command]
        env = dict(os.environ)
        env.update({key: fill(value) for key, value in self._config.env.items()})
        output = asyncio.subprocess.DEVNULL if self._config.discard_output else sys.stderr.fileno()
        replica.process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=output,
            stderr=output,
            env=env,
            cwd=self._cwd,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        replica.phase = "Running"
        replica.started_at = self._clock.now()
        replica.ready = not self._config.health_path
        replica.ready_changed_at = replica.started_at
        log.info(
            "replica started",
            extra={"target": self._target, "replica": replica.name, "pid": replica.process.pid, "port": replica.port},
        )

    async def _supervise(self, replica: _Replica) -> None:
        """Probe a replica while it runs; restart it (with backoff) when it exits on its own."""
        delay = self._config.restart_delay_seconds
        while not replica.stopping:
            process = replica.process
            if process is None:
                return
            probe = asyncio.create_task(self._probe(replica)) if self._config.health_path else None
            code = await process.wait()
            if probe is not None:
                probe.cancel()
                await asyncio.gather(probe, return_exceptions=True)
            if replica.stopping:
                return
            ran_for = self._clock.now() - replica.started_at
            self._set_ready(replica, False)
            replica.phase = "Failed"
            replica.restarts += 1
            self.changed.set()
            if ran_for >= _STABLE_RUN_SECONDS:
                delay = self._config.restart_delay_seconds
            log.warning(
                "replica exited; restarting",
                extra={"target": self._target, "replica": replica.name, "code": code, "restart_in": delay},
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._config.max_restart_delay_seconds)
            if replica.stopping:
                return
            try:
                await self._spawn(replica)
            except OSError as exc:
                log.error("replica restart failed", extra={"replica": replica.name, "error": str(exc)})
                replica.process = None
                continue
            self.changed.set()

    async def _probe(self, replica: _Replica) -> None:
        url = f"{replica.endpoint}{self._config.health_path}"
        while True:
            ok = False
            if self._session is not None:
                try:
                    async with self._session.get(url) as response:
                        ok = response.status == 200
                        await response.read()
                except (aiohttp.ClientError, TimeoutError, OSError):
                    ok = False
            if not replica.stopping:
                self._set_ready(replica, ok)
            await asyncio.sleep(self._config.health_interval_seconds)

    def _set_ready(self, replica: _Replica, ready: bool) -> None:
        if replica.ready != ready:
            replica.ready = ready
            replica.ready_changed_at = self._clock.now()
            self.changed.set()

    def _begin_stop(self, replica: _Replica) -> None:
        replica.stopping = True
        replica.phase = "Terminating"
        replica.ready = False
        replica.ready_changed_at = self._clock.now()
        task = asyncio.create_task(self._stop_replica(replica), name=f"stop-{replica.name}")
        self._stoppers.add(task)
        task.add_done_callback(self._stoppers.discard)

    async def _stop_replica(self, replica: _Replica) -> None:
        process = replica.process
        if process is not None and process.returncode is None:
            _signal_group(process.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), timeout=self._config.grace_seconds)
            except TimeoutError:
                log.warning("replica ignored SIGTERM; killing", extra={"replica": replica.name})
                _signal_group(process.pid, signal.SIGKILL)
                await process.wait()
        if process is not None:
            _signal_group(process.pid, signal.SIGKILL)  # stragglers left in the group
        if replica.supervisor is not None:
            replica.supervisor.cancel()
            await asyncio.gather(replica.supervisor, return_exceptions=True)
        with contextlib.suppress(ValueError):
            self._replicas.remove(replica)
        log.info("replica stopped", extra={"target": self._target, "replica": replica.name})
        self.changed.set()


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
