"""Generate JSON Schemas of the wire messages (``make schemas``)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import msgspec


def schema_documents(types: Iterable[Any]) -> dict[str, str]:
    """File name -> JSON Schema text, one per type, sorted keys so output is stable."""
    documents: dict[str, str] = {}
    for message_type in types:
        schema = msgspec.json.schema(message_type)
        name = getattr(message_type, "__name__", str(message_type))
        schema.setdefault("$schema", "https://json-schema.org/draft/2020-12/schema")
        schema.setdefault("title", name)
        documents[f"{name}.json"] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    return documents


def write_schemas(directory: Path, documents: dict[str, str]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in documents.items():
        (directory / name).write_text(text, encoding="utf-8")
