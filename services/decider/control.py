"""Pause and resume targets at run time: a small wire message on ``<prefix>.decider.control``."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from shared.schemas import TargetName
from shared.subjects import Subjects

CONTROL_VERSION = 1


class DeciderControl(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind", tag="decider_control"):
    """``{"kind": "decider_control", "action": "pause", "target": "web"}``; any NATS client may send it."""

    version: int = CONTROL_VERSION
    action: Literal["pause", "resume"]
    target: TargetName
    reason: str = ""
    replicas: Annotated[int, msgspec.Meta(ge=0)] | None = None
    """With ``pause``: hold the target at this size (KEDA ``paused-replicas``)."""


def control_subject(subjects: Subjects) -> str:
    return f"{subjects.prefix}.decider.control"
