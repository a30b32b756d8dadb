"""The fast push decoder accepts exactly what the documented MetricPush schema accepts."""

from __future__ import annotations

import msgspec
import pytest

from services.collector.pushes import PushDecoder, PushedMetric
from shared.errors import MalformedMessage
from shared.schemas import MetricPush


def test_pushed_metric_has_the_fields_and_defaults_of_metric_push() -> None:
    fast, documented = msgspec.structs.fields(PushedMetric), msgspec.structs.fields(MetricPush)
    assert [(f.name, f.encode_name, f.default) for f in fast] == [
        (f.name, f.encode_name, f.default) for f in documented
    ]
    assert PushedMetric.__struct_config__.tag == MetricPush.__struct_config__.tag
    assert PushedMetric.__struct_config__.tag_field == MetricPush.__struct_config__.tag_field


@pytest.mark.parametrize(
    "payload",
    [
        b'{"target": "web", "name": "queue_depth", "value": 1}',
        b'{"kind": "metric_push", "version": 1, "target": "shop/web", "name": "a:b_c", "value": -2.5, '
        b'"labels": {"pod": "x"}}',
        b'[{"target": "web", "name": "a", "value": 1}, {"target": "web", "name": "b", "value": 2, "unit": "s"}]',
        b'{"target": "web", "name": "q", "value": 1, "extra_field": "ignored"}',
    ],
)
def test_payloads_valid_for_the_schema_decode_to_the_same_values(payload: bytes) -> None:
    decoded = PushDecoder().decode(payload)
    documented = msgspec.json.decode(payload, type=MetricPush | list[MetricPush])
    expected = documented if isinstance(documented, list) else [documented]
    assert [msgspec.to_builtins(p) for p in decoded] == [msgspec.to_builtins(p) for p in expected]


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b'{"target": "Web", "name": "q", "value": 1}', "at target: Expected `str` matching regex"),
        (b'{"target": "web", "name": "9lives", "value": 1}', "at name: Expected `str` matching regex"),
        (
            b'[{"target": "web", "name": "ok", "value": 1}, {"target": "web", "name": "no spaces", "value": 1}]',
            "at $[1].name: Expected `str` matching regex",
        ),
        (b'{"target": "web", "name": "q", "value": "high"}', "at value: Expected `float`, got `str`"),
        (b'{"target": "web", "value": 1}', "missing required field `name`"),
        (b'{"kind": "metric_snapshot", "target": "web", "name": "q", "value": 1}', "Invalid value 'metric_snapshot'"),
        (b"{oops", "not valid JSON"),
    ],
)
def test_payloads_invalid_for_the_schema_are_malformed_with_the_reason(payload: bytes, reason: str) -> None:
    with pytest.raises(msgspec.DecodeError):  # ValidationError is a DecodeError
        msgspec.json.decode(payload, type=MetricPush | list[MetricPush])
    with pytest.raises(MalformedMessage) as caught:
        PushDecoder().decode(payload)
    assert reason in str(caught.value)


def test_a_name_that_once_passed_is_not_checked_again_but_a_bad_one_always_fails() -> None:
    decoder = PushDecoder()
    for _ in range(3):
        decoder.decode(b'{"target": "web", "name": "q", "value": 1}')
        with pytest.raises(MalformedMessage):
            decoder.decode(b'{"target": "web", "name": "bad name", "value": 1}')
