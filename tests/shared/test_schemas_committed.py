"""The JSON Schemas committed in docs/schemas/ are exactly what the code generates."""

from __future__ import annotations

from pathlib import Path

from scalebus.schemas import documented_types
from shared.schema_export import schema_documents

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "docs" / "schemas"


def test_every_generated_schema_is_committed_unchanged() -> None:
    generated = schema_documents(documented_types())
    for name, text in generated.items():
        committed = SCHEMA_DIR / name
        assert committed.exists(), f"{name} is not committed: run `make schemas`"
        assert committed.read_text(encoding="utf-8") == text, f"{name} differs from the code: run `make schemas`"


def test_no_stale_schema_is_left_behind() -> None:
    generated = set(schema_documents(documented_types()))
    committed = {path.name for path in SCHEMA_DIR.glob("*.json")}
    assert committed <= generated, f"schemas with no type behind them: {sorted(committed - generated)}"
