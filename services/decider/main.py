"""Entry point: ``python -m services.decider.main --config deploy/local/decider.yaml``."""

from __future__ import annotations

from pathlib import Path

from services.decider.config import DeciderConfig
from services.decider.policy.registry import PolicyRegistry
from services.decider.service import Decider
from services.decider.telemetry import DeciderMetrics
from shared.lifecycle import Runtime, run_service


def resolve(path: str, config_path: Path) -> Path:
    """A path from the config file, relative to the config file's directory."""
    candidate = Path(path)
    return candidate if candidate.is_absolute() else config_path.parent / candidate


async def build(config: DeciderConfig, runtime: Runtime, config_path: Path) -> Decider:
    registry = PolicyRegistry(resolve(config.policies_dir, config_path), config.hpa.settings())
    registry.load_strict()
    return Decider(
        config,
        bus=runtime.bus,
        clock=runtime.clock,
        registry=registry,
        metrics=DeciderMetrics(runtime.registry),
        instance=runtime.instance,
    )


def main(argv: list[str] | None = None) -> int:
    return run_service("decider", DeciderConfig, build, argv)


if __name__ == "__main__":
    raise SystemExit(main())
