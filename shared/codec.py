"""JSON encoding and decoding of wire messages, with errors that say what is wrong."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

import msgspec

from shared.config import split_validation_message
from shared.errors import MalformedMessage

T = TypeVar("T")

_encoder = msgspec.json.Encoder()


def encode(message: msgspec.Struct) -> bytes:
    """Encode a wire message as JSON."""
    return _encoder.encode(message)


class MessageDecoder(Generic[T]):
    """Decodes JSON payloads into one message type (or a tagged union) or raises MalformedMessage."""

    def __init__(self, message_type: Any) -> None:
        self._decoder: msgspec.json.Decoder[T] = msgspec.json.Decoder(message_type)
        self.type_name = getattr(message_type, "__name__", str(message_type))

    def decode(self, payload: bytes) -> T:
        try:
            return self._decoder.decode(payload)
        except msgspec.ValidationError as exc:
            field, reason = split_validation_message(str(exc))
            where = f" at {field}" if field else ""
            raise MalformedMessage(f"not a valid {self.type_name}{where}: {reason}") from exc
        except msgspec.DecodeError as exc:
            raise MalformedMessage(f"not valid JSON: {exc}") from exc
