"""Entry point: ``python -m services.actuator.main --config deploy/local/actuator.yaml``."""

from __future__ import annotations

from services.actuator.config import ActuatorConfig
from services.actuator.service import build
from shared.lifecycle import run_service


def main(argv: list[str] | None = None) -> int:
    return run_service("actuator", ActuatorConfig, build, argv)


if __name__ == "__main__":
    raise SystemExit(main())
