"""Read policy files: YAML (one or more documents per file) validated into TargetPolicies."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from services.decider.engine.spec import ControllerSettings, TargetPolicy
from services.decider.policy.compile import compile_policy
from services.decider.policy.model import PolicyDocument
from shared.config import ConfigError, parse_config

POLICY_SUFFIXES = (".yaml", ".yml", ".json")


def _documents(text: str, file: str) -> Iterator[tuple[int, Any]]:
    try:
        yield from enumerate(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(file, "", f"invalid YAML: {where}{problem}") from exc


def parse_policies(text: str, *, file: str, settings: ControllerSettings) -> list[TargetPolicy]:
    """Every policy document in ``text``; ConfigError names the file (and document), field and reason."""
    documents = [(i, d) for i, d in _documents(text, file) if d is not None]
    policies: list[TargetPolicy] = []
    for index, data in documents:
        where = file if len(documents) == 1 else f"{file} (document {index + 1})"
        if not isinstance(data, dict):
            raise ConfigError(where, "", f"expected a mapping at the top level, got {type(data).__name__}")
        document = parse_config(data, PolicyDocument, file=where)
        policies.append(compile_policy(document, file=where, settings=settings))
    if not policies:
        raise ConfigError(file, "", "no policy document in the file")
    return policies


def load_policy_file(path: Path, settings: ControllerSettings) -> list[TargetPolicy]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), "", f"cannot read: {exc.strerror or exc}") from exc
    return parse_policies(text, file=str(path), settings=settings)


def policy_files(directory: Path) -> list[Path]:
    """Policy files of a directory, sorted; hidden entries (a ConfigMap's ``..data``) are skipped."""
    if not directory.is_dir():
        raise ConfigError(str(directory), "", "policies directory not found")
    return sorted(
        entry
        for entry in directory.iterdir()
        if not entry.name.startswith(".") and entry.suffix in POLICY_SUFFIXES and entry.is_file()
    )


def digest(path: Path) -> str:
    """Content digest (follows symlinks, so a ConfigMap's atomic ``..data`` swap shows up)."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:
        return f"unreadable:{exc.errno}"
