"""Entry point of the collector process: ``python -m services.collector.main --config FILE``."""

from __future__ import annotations

from pathlib import Path

from services.collector.config import CollectorConfig
from services.collector.service import Collector
from shared.lifecycle import Runtime, run_service


async def build(config: CollectorConfig, runtime: Runtime, config_path: Path) -> Collector:
    """The collector for a loaded config; relative paths in it resolve against the config's directory."""
    return Collector(
        config,
        bus=runtime.bus,
        instance=runtime.instance,
        registry=runtime.registry,
        clock=runtime.clock,
        config_dir=config_path.parent,
        push_bus_config=config.service.bus,
    )


def main(argv: list[str] | None = None) -> int:
    return run_service("collector", CollectorConfig, build, argv)


if __name__ == "__main__":
    raise SystemExit(main())
