"""The nats-server controller used by tests and `make run`."""

from __future__ import annotations

from pathlib import Path

import nats
import pytest

from shared.natsserver import NatsServer, NatsServerError, free_port


async def test_it_starts_a_real_server_with_jetstream_and_removes_its_store() -> None:
    server = NatsServer()
    async with server:
        assert server.running
        nc = await nats.connect(server.url)
        info = await nc.jetstream().account_info()
        assert info is not None
        await nc.close()
        store = server.store_dir
        assert store.exists()
    assert not server.running
    assert not store.exists()


async def test_a_port_in_use_is_reported_with_the_servers_words(tmp_path: Path) -> None:
    port = free_port()
    async with NatsServer(port=port, store_dir=tmp_path / "a"):
        with pytest.raises(NatsServerError, match="did not become ready"):
            await NatsServer(port=port, store_dir=tmp_path / "b", startup_timeout=5).start()


async def test_a_restart_keeps_the_store(tmp_path: Path) -> None:
    async with NatsServer(store_dir=tmp_path / "s") as server:
        nc = await nats.connect(server.url)
        kv = await nc.jetstream().create_key_value(bucket="kept")
        await kv.put("k", b"v")
        await nc.close()
        await server.restart()
        nc = await nats.connect(server.url)
        kv = await nc.jetstream().key_value("kept")
        assert (await kv.get("k")).value == b"v"
        await nc.close()
