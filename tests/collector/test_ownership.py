"""Several collectors share the targets without double-collecting; a dead collector's targets move.

Ownership: every instance heartbeats into the NATS KV bucket `scalebus_collector_owners`; targets
are assigned by rendezvous hashing over the live members.
"""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from pathlib import Path

import yaml

from services.collector.ownership import Membership, member_key, owner_of
from shared.bus import Bus
from shared.config import BusConfig

from .conftest import CollectorFactory, ServiceStarter, SnapshotListener, config_from

TARGETS = [f"t{number}" for number in range(12)]
OWNERSHIP = {"heartbeat_seconds": 0.2, "member_ttl_seconds": 2.0}


def test_every_target_has_exactly_one_owner_and_all_members_get_some() -> None:
    members = ["members.a", "members.b", "members.c"]
    owners = [owner_of(f"target-{n}", members) for n in range(300)]
    assert all(owner in members for owner in owners)
    assert min(Counter(owners).values()) > 50  # spread, not all on one member
    assert owner_of("web", []) is None


def test_when_a_member_leaves_only_its_targets_move() -> None:
    before = {f"target-{n}": owner_of(f"target-{n}", ["a", "b", "c"]) for n in range(300)}
    after = {target: owner_of(target, ["a", "c"]) for target in before}
    moved = {target for target in before if before[target] != after[target]}
    assert moved == {target for target, owner in before.items() if owner == "b"}


def test_member_keys_are_valid_kv_keys() -> None:
    assert member_key("collector-host:1 x") == "members.collector-host_1_x"


def recent_owners(listener: SnapshotListener, since: int) -> dict[str, set[str]]:
    owners: dict[str, set[str]] = {}
    for snapshot in listener.snapshots[since:]:
        owners.setdefault(snapshot.target, set()).add(snapshot.collector)
    return owners


async def wait_until(condition: object, within: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():  # type: ignore[operator]
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {within}s")
        await asyncio.sleep(0.1)


def shared_config(**extra: object) -> dict[str, object]:
    return {
        "snapshot_interval_seconds": 0.2,
        "ownership": OWNERSHIP,
        "targets": [{"name": name} for name in TARGETS],
        **extra,
    }


async def test_two_collectors_split_the_targets_and_the_survivor_takes_over_after_a_graceful_stop(
    bus: Bus, snapshots: SnapshotListener, collector_factory: CollectorFactory
) -> None:
    first = await collector_factory(config_from(shared_config()), instance="collector-a")
    second = await collector_factory(config_from(shared_config()), instance="collector-b")
    both = {first.membership.key, second.membership.key}  # type: ignore[union-attr]
    await wait_until(lambda: first.membership.members == both == second.membership.members, 5.0)  # type: ignore[union-attr]
    await asyncio.sleep(0.5)  # let in-flight snapshots of the start-up (single-member view) pass

    mark = len(snapshots.snapshots)
    await asyncio.sleep(1.0)
    owners = recent_owners(snapshots, mark)
    assert set(owners) == set(TARGETS)
    assert all(len(collectors) == 1 for collectors in owners.values()), owners
    assert {c for collectors in owners.values() for c in collectors} == {"collector-a", "collector-b"}
    assert sorted(first.owned_targets + second.owned_targets) == sorted(TARGETS)

    await first.stop()  # leaves the bucket: the other takes over at its next heartbeat
    await wait_until(lambda: second.owned_targets == sorted(TARGETS), 3.0)
    mark = len(snapshots.snapshots)
    await asyncio.sleep(0.6)
    assert recent_owners(snapshots, mark) == {target: {"collector-b"} for target in TARGETS}


async def test_a_killed_collector_process_loses_its_targets_to_the_others_after_the_member_ttl(
    bus: Bus,
    bus_config: BusConfig,
    snapshots: SnapshotListener,
    collector_factory: CollectorFactory,
    tmp_path: Path,
    start_service: ServiceStarter,
) -> None:
    config_file = tmp_path / "collector.yaml"
    config_file.write_text(yaml.safe_dump({**shared_config(), "service": {"instance": "collector-proc"}}))
    process = await start_service(
        "collector", config_file, bus_config.url, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    try:
        await snapshots.wait_for(lambda s: s.collector == "collector-proc", within=20.0)
        survivor = await collector_factory(config_from(shared_config()), instance="collector-survivor")
        await wait_until(lambda: len(survivor.membership.members) == 2, 5.0)  # type: ignore[union-attr]
        assert 0 < len(survivor.owned_targets) < len(TARGETS)
    finally:
        process.send_signal(signal.SIGKILL)  # no goodbye: its key must expire
        await process.wait()
    await wait_until(lambda: survivor.owned_targets == sorted(TARGETS), 10.0)
    mark = len(snapshots.snapshots)
    await asyncio.sleep(0.6)
    assert recent_owners(snapshots, mark) == {target: {"collector-survivor"} for target in TARGETS}


async def test_a_pushed_metric_is_ingested_by_the_targets_owner_only(
    bus: Bus, snapshots: SnapshotListener, collector_factory: CollectorFactory
) -> None:
    config = config_from({"snapshot_interval_seconds": 0.2, "ownership": OWNERSHIP})
    first = await collector_factory(config, instance="collector-a")
    second = await collector_factory(config, instance="collector-b")
    both = {first.membership.key, second.membership.key}  # type: ignore[union-attr]
    await wait_until(lambda: first.membership.members == both == second.membership.members, 5.0)  # type: ignore[union-attr]
    targets = [f"queue-{number}" for number in range(8)]
    for target in targets:
        await bus.nc.publish(
            bus.subjects.metrics(target), f'{{"target": "{target}", "name": "depth", "value": 1}}'.encode()
        )
    await bus.nc.flush()
    await wait_until(lambda: {s.target for s in snapshots.snapshots} >= set(targets), 5.0)
    await asyncio.sleep(0.5)
    owners = recent_owners(snapshots, 0)
    expected = {
        target: {"collector-a" if owner_of(target, both) == first.membership.key else "collector-b"}  # type: ignore[union-attr]
        for target in targets
    }
    assert owners == expected
    ignored = first.metrics.pushes_ignored.labels("not_owner")._value.get()
    ignored += second.metrics.pushes_ignored.labels("not_owner")._value.get()
    assert ignored == len(targets)  # each push reached both; the non-owner dropped it


async def noop(_: frozenset[str]) -> None:
    return None


def detached_membership(instance: str) -> Membership:
    """A Membership whose member view tests set by hand (no bucket is touched)."""
    return Membership(
        None,  # type: ignore[arg-type]
        bucket="b",
        instance=instance,
        heartbeat_seconds=1,
        member_ttl_seconds=4,
        on_change=noop,
    )


def test_a_member_missing_from_one_listing_is_kept_and_dropped_after_two() -> None:
    """A key listing can race with a heartbeat and miss a live member; one miss must not move targets."""
    membership = detached_membership("a")
    membership.members = frozenset({"members.a", "members.b"})
    assert membership._tolerate_misses({"members.a"}) == {"members.a", "members.b"}
    assert membership._tolerate_misses({"members.a", "members.b"}) == {"members.a", "members.b"}
    membership.members = frozenset({"members.a", "members.b"})
    kept = membership._tolerate_misses({"members.a"})
    membership.members = frozenset(kept)
    assert membership._tolerate_misses({"members.a"}) == {"members.a"}


async def test_a_malformed_push_is_dead_lettered_once_by_the_owner_not_by_every_collector(
    bus: Bus, collector_factory: CollectorFactory
) -> None:
    letters: list[bytes] = []

    async def on_letter(msg: object) -> None:
        letters.append(msg.data)  # type: ignore[attr-defined]

    await bus.nc.subscribe(bus.subjects.dead_letter("collector"), cb=on_letter)
    config = config_from({"ownership": OWNERSHIP})
    first = await collector_factory(config, instance="collector-a")
    second = await collector_factory(config, instance="collector-b")
    both = {first.membership.key, second.membership.key}  # type: ignore[union-attr]
    await wait_until(lambda: first.membership.members == both == second.membership.members, 5.0)  # type: ignore[union-attr]
    for number in range(6):
        await bus.nc.publish(bus.subjects.metrics(f"queue-{number}"), b'{"name": "depth"}')
    await bus.nc.flush()
    await wait_until(lambda: len(letters) >= 6, 5.0)
    await asyncio.sleep(0.3)  # a duplicate would arrive within this
    assert len(letters) == 6


def test_ownership_follows_a_change_of_members_although_it_is_remembered_per_target() -> None:
    """`owns` is asked for every push, so it is remembered; a new member view must replace it at once."""
    membership = detached_membership("a")
    targets = [f"target-{n}" for n in range(40)]
    membership.members = frozenset({"members.a", "members.b"})
    shared = {target for target in targets if membership.owns(target)}
    assert shared == {target for target in targets if owner_of(target, membership.members) == "members.a"}
    assert 0 < len(shared) < len(targets)
    membership.members = frozenset({"members.a"})
    assert all(membership.owns(target) for target in targets)
    membership.members = frozenset({"members.a", "members.b"})
    assert {target for target in targets if membership.owns(target)} == shared
