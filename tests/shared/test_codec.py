"""Wire messages round-trip through JSON; malformed payloads fail with a reason, never silently."""

from __future__ import annotations

import msgspec
import pytest

from shared.codec import MessageDecoder, encode
from shared.errors import MalformedMessage
from shared.schemas import SCHEMA_VERSION, WIRE_MESSAGES, MetricPush, MetricSample, MetricSnapshot


def test_a_snapshot_round_trips_with_its_kind_and_version() -> None:
    snapshot = MetricSnapshot(
        target="web",
        collected_at=1.5,
        samples=(MetricSample(name="qps", value=3.0, labels={"pod": "web-0"}),),
    )
    payload = encode(snapshot)
    assert b'"kind":"metric_snapshot"' in payload
    assert b'"version":1' in payload
    assert MessageDecoder(MetricSnapshot).decode(payload) == snapshot


def test_every_wire_message_is_frozen_and_versioned() -> None:
    for message_type in WIRE_MESSAGES:
        assert message_type.__struct_config__.frozen, message_type
        assert "version" in message_type.__struct_fields__, message_type
        assert message_type.__struct_config__.tag_field == "kind", message_type
    assert SCHEMA_VERSION == 1


def test_invalid_json_is_malformed() -> None:
    with pytest.raises(MalformedMessage, match="not valid JSON"):
        MessageDecoder(MetricPush).decode(b"{not json")


def test_a_wrong_field_type_names_the_field() -> None:
    payload = b'{"kind":"metric_push","target":"web","name":"qps","value":"lots"}'
    with pytest.raises(MalformedMessage, match="at value"):
        MessageDecoder(MetricPush).decode(payload)


def test_a_bad_target_name_is_rejected() -> None:
    payload = b'{"kind":"metric_push","target":"Web App!","name":"qps","value":1}'
    with pytest.raises(MalformedMessage, match="target"):
        MessageDecoder(MetricPush).decode(payload)


def test_a_message_of_another_kind_is_rejected() -> None:
    payload = encode(MetricPush(target="web", name="qps", value=1.0))
    with pytest.raises(MalformedMessage):
        MessageDecoder(MetricSnapshot).decode(payload)


def test_unknown_fields_from_newer_producers_are_tolerated() -> None:
    payload = b'{"kind":"metric_push","target":"web","name":"qps","value":1,"future_field":true}'
    assert MessageDecoder(MetricPush).decode(payload).value == 1.0


def test_messages_cannot_be_mutated() -> None:
    push = MetricPush(target="web", name="qps", value=1.0)
    with pytest.raises(AttributeError):
        push.value = 2.0  # type: ignore[misc]
    assert msgspec.structs.replace(push, value=2.0).value == 2.0
