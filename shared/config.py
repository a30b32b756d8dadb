"""Configuration is data: YAML files validated into frozen msgspec Structs.

Errors name the file, the field (as a JSON path) and the reason, so an operator can fix the
file without reading code.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, TypeVar

import msgspec
import yaml

T = TypeVar("T")

_PATH_SUFFIX = re.compile(r"^(?P<reason>.*?)(?: - at `(?P<path>[^`]*)`)?$", re.DOTALL)


class ConfigError(Exception):
    """A configuration file is missing or invalid."""

    def __init__(self, file: str, field: str, reason: str) -> None:
        self.file = file
        self.field = field
        self.reason = reason
        where = f"{file}: {field}" if field else file
        super().__init__(f"{where}: {reason}")


class Config(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Base for config sections: frozen, keyword-only, unknown fields rejected."""


class BusConfig(Config, frozen=True, kw_only=True):
    """How a service reaches NATS."""

    url: str = "nats://127.0.0.1:4222"
    subject_prefix: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")] = "scalebus"
    connect_timeout_seconds: Annotated[float, msgspec.Meta(gt=0)] = 2.0
    connect_attempts: Annotated[int, msgspec.Meta(ge=1)] = 10
    drain_timeout_seconds: Annotated[float, msgspec.Meta(gt=0)] = 5.0


class HttpConfig(Config, frozen=True, kw_only=True):
    """The one aiohttp server of a process: /metrics, /livez, /readyz."""

    host: str = "127.0.0.1"
    port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 0
    """0 picks a free port (logged at start-up)."""


class ServiceConfig(Config, frozen=True, kw_only=True):
    """Settings every service shares."""

    instance: str = ""
    """Instance name; defaults to ``<service>-<hostname>-<pid>``."""
    log_level: str = "INFO"
    bus: BusConfig = msgspec.field(default_factory=BusConfig)
    http: HttpConfig = msgspec.field(default_factory=HttpConfig)
    shutdown_deadline_seconds: Annotated[float, msgspec.Meta(gt=0)] = 12.0


def split_validation_message(message: str) -> tuple[str, str]:
    """Split msgspec's ``"reason - at `$.a.b`"`` into (field path, reason)."""
    match = _PATH_SUFFIX.match(message)
    if match is None:  # pragma: no cover - the pattern matches every string
        return "", message
    path = match.group("path") or ""
    field = path[2:] if path.startswith("$.") else ("" if path == "$" else path)
    return field, match.group("reason")


def parse_config(data: Any, into: type[T], *, file: str) -> T:
    """Validate already-parsed YAML/JSON data into ``into``."""
    try:
        return msgspec.convert(data, into, strict=False)
    except msgspec.ValidationError as exc:
        field, reason = split_validation_message(str(exc))
        raise ConfigError(file, field, reason) from exc


def read_yaml(path: Path) -> Any:
    """Read one YAML document, with errors that name the file and the line."""
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(file, "", "file not found") from exc
    except OSError as exc:
        raise ConfigError(file, "", f"cannot read: {exc.strerror or exc}") from exc
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(file, "", f"invalid YAML: {where}{problem}") from exc


def load_config(path: Path | str, into: type[T]) -> T:
    """Load and validate a YAML config file; raise :class:`ConfigError` naming file, field and reason."""
    path = Path(path)
    data = read_yaml(path)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(str(path), "", f"expected a mapping at the top level, got {type(data).__name__}")
    return parse_config(data, into, file=str(path))
