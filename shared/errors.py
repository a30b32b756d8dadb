"""The error taxonomy: an error's class decides what happens to the message that caused it.

- :class:`MalformedMessage` and :class:`PermanentError`: never retried; the message is
  terminated and published to the dead-letter subject with the reason.
- :class:`RetryableError`: negatively acknowledged with a delay, delivered again later.
"""

from __future__ import annotations


class ScalebusError(Exception):
    """Base of every scalebus error."""


class PermanentError(ScalebusError):
    """Retrying will not help (bad input, forbidden, not found)."""


class MalformedMessage(PermanentError):
    """A message that does not decode into its schema."""


class RetryableError(ScalebusError):
    """A transient failure (timeout, 5xx, 429, lease held elsewhere); try again after ``delay``."""

    def __init__(self, message: str, *, delay: float = 1.0) -> None:
        super().__init__(message)
        self.delay = delay
