"""The one small interface every backend implements, and the errors that carry retry meaning."""

from __future__ import annotations

import asyncio
from typing import Protocol

import msgspec

from shared.schemas import ReplicaStatus


class BackendError(Exception):
    """A backend call failed; ``status`` is the HTTP status code when there was one."""

    retryable: bool = False

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after
        """Seconds the server asked us to wait (``Retry-After``), when it said."""


class TransientBackendError(BackendError):
    """Worth retrying: a timeout, a 5xx, a 429, a conflict that outlived its re-reads, a connection reset."""

    retryable = True


class PermanentBackendError(BackendError):
    """Retrying will not help: forbidden, not found, invalid, or a command that cannot be started."""

    retryable = False


class Observed(msgspec.Struct, frozen=True, kw_only=True):
    """What a backend reports about a target right now."""

    spec_replicas: int
    """Replicas asked for."""
    current_replicas: int
    """Replicas that exist (started and not terminating)."""
    ready_replicas: int
    replicas: tuple[ReplicaStatus, ...] = ()


class Backend(Protocol):
    """One target's replicas, as one backend manages them."""

    kind: str
    """``local`` or ``kubernetes`` (the TargetStatus ``backend`` field)."""
    endpoint: str
    """Where calls go (a label for the per-endpoint metrics): ``local``, or the API server URL."""
    success_status: int | None
    """The HTTP status a successful call was answered with (counted per endpoint); None when the backend
    speaks no HTTP.  A failed call's status travels in its :class:`BackendError`."""
    changed: asyncio.Event
    """Set by the backend whenever something observable changed (a crash, a replica became ready)."""

    async def start(self) -> None:
        """Begin managing the target (the local backend starts its initial replicas)."""

    async def stop(self) -> None:
        """Stop managing it (the local backend stops every replica it started: no orphans)."""

    async def read(self) -> Observed:
        """The target's replicas as they are now."""

    async def scale(self, replicas: int) -> Observed:
        """Ask for ``replicas`` replicas; returns what is observed right after the change was accepted."""
