"""JetStream KV helpers shared by the idempotency store and the leases."""

from __future__ import annotations

import hashlib
import re

from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig
from nats.js.errors import BadRequestError
from nats.js.kv import KeyValue

_PLAIN_KEY = re.compile(r"^[-_=A-Za-z0-9]{1,200}$")


def kv_key(raw: str) -> str:
    """A KV key for any string: itself when it is plain, else ``h-<sha256>`` (``.``/``/`` split tokens)."""
    if _PLAIN_KEY.match(raw):
        return raw
    return "h-" + hashlib.sha256(raw.encode("utf-8")).hexdigest()[:48]


async def open_bucket(
    js: JetStreamContext, bucket: str, *, ttl: float | None = None, description: str = ""
) -> KeyValue:
    """Create the bucket if it does not exist; bind to it if it does (with whatever settings it has)."""
    try:
        return await js.create_key_value(KeyValueConfig(bucket=bucket, history=1, ttl=ttl, description=description))
    except BadRequestError:
        return await js.key_value(bucket)
