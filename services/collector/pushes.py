"""Decoding pushed metrics fast enough for 100,000 samples per second.

``shared.schemas.MetricPush`` is the documented wire format.  Decoding it checks two regular
expressions (target and metric name) on every sample, which costs most of the decoding time.
:class:`PushedMetric` has the same fields and defaults without the per-sample patterns; this
decoder applies the very same patterns (read from the schema) once per distinct value and
remembers the values that passed.  A payload is accepted exactly when it is a valid MetricPush
(or a JSON array of them); ``tests/collector/test_pushes.py`` holds the two definitions together.
"""

from __future__ import annotations

import re
from typing import Any, Protocol, get_args

import msgspec

from shared.codec import MessageDecoder
from shared.config import split_validation_message
from shared.errors import MalformedMessage
from shared.schemas import SCHEMA_VERSION, MetricName, TargetName


class PushLike(Protocol):
    """What the collector reads from a pushed sample (MetricPush and PushedMetric both fit)."""

    @property
    def target(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def value(self) -> float: ...
    @property
    def timestamp(self) -> float: ...
    @property
    def unit(self) -> str: ...
    @property
    def labels(self) -> dict[str, str]: ...


class PushedMetric(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind", tag="metric_push"):
    """Wire-identical to :class:`shared.schemas.MetricPush`; `target` and `name` are checked by the decoder."""

    version: int = SCHEMA_VERSION
    target: str
    name: str
    value: float
    timestamp: float = 0.0
    unit: str = ""
    labels: dict[str, str] = msgspec.field(default_factory=dict)


def _pattern_of(annotated: Any) -> re.Pattern[str]:
    meta = next(arg for arg in get_args(annotated) if isinstance(arg, msgspec.Meta))
    assert meta.pattern is not None
    return re.compile(meta.pattern)


class PushDecoder(MessageDecoder[list[PushedMetric]]):
    """Decodes a MetricPush or a JSON array of them into a list; raises MalformedMessage like the schema would."""

    CACHE_LIMIT = 100_000

    def __init__(self) -> None:
        super().__init__(PushedMetric | list[PushedMetric])
        self.type_name = "MetricPush"
        self._fast: msgspec.json.Decoder[PushedMetric | list[PushedMetric]] = msgspec.json.Decoder(
            PushedMetric | list[PushedMetric]
        )
        self._checks = (("target", _pattern_of(TargetName)), ("name", _pattern_of(MetricName)))
        self._valid: dict[str, set[str]] = {"target": set(), "name": set()}

    def _check(self, field: str, pattern: re.Pattern[str], value: str, where: str) -> None:
        valid = self._valid[field]
        if value in valid:
            return
        if pattern.search(value) is None:
            raise MalformedMessage(
                f"not a valid MetricPush at {where}{field}: Expected `str` matching regex {pattern.pattern!r}"
            )
        if len(valid) >= self.CACHE_LIMIT:
            valid.clear()
        valid.add(value)

    def decode(self, payload: bytes) -> list[PushedMetric]:
        try:
            decoded = self._fast.decode(payload)
        except msgspec.ValidationError as exc:
            field, reason = split_validation_message(str(exc))
            where = f" at {field}" if field else ""
            raise MalformedMessage(f"not a valid MetricPush{where}: {reason}") from exc
        except msgspec.DecodeError as exc:
            raise MalformedMessage(f"not valid JSON: {exc}") from exc
        pushes = decoded if isinstance(decoded, list) else [decoded]
        single = not isinstance(decoded, list)
        for index, push in enumerate(pushes):
            where = "" if single else f"$[{index}]."
            for field, pattern in self._checks:
                self._check(field, pattern, getattr(push, field), where)
        return pushes
