"""Sharing targets among collector instances without double-collecting.

Every instance heartbeats a key ``members.<instance>`` into a NATS KV bucket whose entries
expire after ``member_ttl_seconds`` (the bucket's max age; a heartbeat rewrites the key, so only
silent instances expire).  Every instance lists the live members at each heartbeat (a member
counts as gone once missing from two listings in a row) and assigns each target to one of them
by rendezvous (highest-random-weight) hashing: all instances that see the same members agree on
the owner of every target without talking to each other, and when a member goes away only its
targets move.  An instance that stops deletes its key, so its targets move within two heartbeats
of the others instead of after the TTL.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
from collections.abc import Awaitable, Callable, Iterable

from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig
from nats.js.errors import BucketNotFoundError, NoKeysError
from nats.js.kv import KeyValue

from shared.tasks import cancel_and_wait

log = logging.getLogger(__name__)

MEMBER_PREFIX = "members."
MISSES_TO_LEAVE = 2
"""A member absent from this many key listings in a row is gone (its key expired or was deleted)."""
OWNED_CACHE_LIMIT = 100_000
"""Targets whose ownership is remembered at most (pushes can name any target)."""
_UNSAFE_KEY_CHARS = re.compile(r"[^-/_=.a-zA-Z0-9]")


def member_key(instance: str) -> str:
    """The KV key of an instance (characters KV keys do not allow become `_`)."""
    return MEMBER_PREFIX + _UNSAFE_KEY_CHARS.sub("_", instance)


def _weight(member: str, target: str) -> int:
    digest = hashlib.blake2b(f"{member}\x00{target}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def owner_of(target: str, members: Iterable[str]) -> str | None:
    """The member that owns ``target``: the one with the highest hash weight (None without members)."""
    best: tuple[int, str] | None = None
    for member in members:
        candidate = (_weight(member, target), member)
        if best is None or candidate > best:
            best = candidate
    return best[1] if best else None


MembershipListener = Callable[[frozenset[str]], Awaitable[None]]


class Membership:
    """This instance's heartbeat in the members bucket, and the live members it sees."""

    def __init__(
        self,
        js: JetStreamContext,
        *,
        bucket: str,
        instance: str,
        heartbeat_seconds: float,
        member_ttl_seconds: float,
        on_change: MembershipListener,
    ) -> None:
        self._js = js
        self._bucket = bucket
        self.key = member_key(instance)
        self._heartbeat = heartbeat_seconds
        self._ttl = member_ttl_seconds
        self._on_change = on_change
        self._kv: KeyValue | None = None
        self._task: asyncio.Task[None] | None = None
        self.members: frozenset[str] = frozenset({self.key})
        self._misses: dict[str, int] = {}
        self._owned: dict[str, bool] = {}
        self._owned_for = self.members
        """The members `_owned` was computed for."""

    def _tolerate_misses(self, listed: set[str]) -> set[str]:
        """Listed members, plus known ones missing from fewer than ``MISSES_TO_LEAVE`` listings in a row.

        A key listing races with concurrent heartbeats and can miss a live member now and then; one
        miss must not move that member's targets back and forth.
        """
        for member in self.members - listed:
            self._misses[member] = self._misses.get(member, 0) + 1
        for member in listed:
            self._misses.pop(member, None)
        kept = {member for member in self.members - listed if self._misses[member] < MISSES_TO_LEAVE}
        for member in set(self._misses) - kept:
            del self._misses[member]
        return listed | kept

    def owns(self, target: str) -> bool:
        """Whether this instance owns ``target``; remembered until the members change (every push asks)."""
        if self._owned_for is not self.members or len(self._owned) >= OWNED_CACHE_LIMIT:
            self._owned = {}
            self._owned_for = self.members
        owned = self._owned.get(target)
        if owned is None:
            owned = self._owned[target] = owner_of(target, self.members) == self.key
        return owned

    async def _bucket_handle(self) -> KeyValue:
        try:
            return await self._js.key_value(self._bucket)
        except BucketNotFoundError:
            pass
        try:
            return await self._js.create_key_value(
                KeyValueConfig(bucket=self._bucket, ttl=self._ttl, history=1, description="live scalebus collectors")
            )
        except Exception:  # another instance created it first
            return await self._js.key_value(self._bucket)

    async def beat(self) -> None:
        """Heartbeat once and refresh the view of live members; notify when it changed."""
        if self._kv is None:
            self._kv = await self._bucket_handle()
        await self._kv.put(self.key, b"alive")
        try:
            keys = await self._kv.keys()  # nats-py's `filters` are substrings, not subject filters
        except NoKeysError:
            keys = []
        listed = {key for key in keys if key.startswith(MEMBER_PREFIX)} | {self.key}
        members = frozenset(self._tolerate_misses(listed))
        if members != self.members:
            log.info("collector members changed", extra={"members": sorted(members)})
            self.members = members
            await self._on_change(members)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._heartbeat)
            try:
                await self.beat()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("collector heartbeat failed", extra={"error": repr(exc)})

    async def start(self) -> None:
        """First heartbeat now (so ownership is known before collecting), then periodically."""
        await self.beat()
        self._task = asyncio.create_task(self._run(), name="collector-heartbeat")

    async def stop(self) -> None:
        """Stop heartbeating and leave, so the others take over at their next heartbeat."""
        task, self._task = self._task, None
        if task is not None:
            await cancel_and_wait(task)
        if self._kv is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._kv.delete(self.key), timeout=2.0)
