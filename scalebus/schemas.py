"""``make schemas``: JSON Schemas of the wire messages and of the config and policy files."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from services.actuator.config import CONFIG_SCHEMA_TYPES as ACTUATOR_CONFIG
from services.collector.config import CONFIG_SCHEMA_TYPES as COLLECTOR_CONFIG
from services.decider.config import CONFIG_SCHEMA_TYPES as DECIDER_CONFIG
from shared.schema_export import schema_documents, write_schemas
from shared.schemas import WIRE_MESSAGES


def documented_types() -> list[Any]:
    """Every type whose JSON Schema is committed under docs/schemas/."""
    return [*WIRE_MESSAGES, *COLLECTOR_CONFIG, *DECIDER_CONFIG, *ACTUATOR_CONFIG]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    directory = Path(args[0]) if args else Path("docs/schemas")
    write_schemas(directory, schema_documents(documented_types()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
