"""The bus: a thin wrapper over nats-py that every service uses the same way.

- connecting is bounded in time (nats-py alone retries for minutes when no server is up);
- every subscription decodes into a schema; a malformed message is logged and published to
  the dead-letter subject with the reason, and the subscription keeps running;
- JetStream streams for decisions, results and dead letters are declared in one place;
- pull consumers map handler errors to ack / nak(delay) / term (see :mod:`shared.errors`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, StreamConfig
from nats.js.errors import BadRequestError

from shared.codec import MessageDecoder, encode
from shared.config import BusConfig
from shared.errors import MalformedMessage, PermanentError, RetryableError
from shared.schemas import DeadLetter
from shared.subjects import Subjects
from shared.tasks import cancel_and_wait
from shared.telemetry import BusMetrics

log = logging.getLogger(__name__)

T = TypeVar("T")
Handler = Callable[[T, Msg], Awaitable[None]]


class BusConnectError(Exception):
    """NATS could not be reached within the configured bound."""


def _subject_family(subject: str) -> str:
    """``scalebus.snapshots.web`` -> ``scalebus.snapshots`` (bounded label cardinality)."""
    return ".".join(subject.split(".")[:2])


def dead_letter_for(service: str, subject: str, payload: bytes, reason: str) -> DeadLetter:
    """Build the dead letter of a payload, keeping it whole (text when it is UTF-8, base64 otherwise)."""
    try:
        text, encoding = payload.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        text, encoding = base64.b64encode(payload).decode("ascii"), "base64"
    return DeadLetter(
        service=service,
        subject=subject,
        reason=reason,
        payload=text,
        payload_encoding=encoding,  # type: ignore[arg-type]
        received_at=time.time(),
    )


class Bus:
    """One NATS connection of a service, with its subjects, metrics and dead-letter handling."""

    def __init__(
        self,
        nc: NATS,
        *,
        service: str,
        subjects: Subjects,
        metrics: BusMetrics | None = None,
        drain_timeout: float = 5.0,
    ) -> None:
        self.nc = nc
        self.js: JetStreamContext = nc.jetstream()
        self.service = service
        self.subjects = subjects
        self._metrics = metrics
        self._drain_timeout = drain_timeout
        self._pull_subscriptions: list[JetStreamContext.PullSubscription] = []
        self._tasks: set[asyncio.Task[None]] = set()

    @classmethod
    async def connect(
        cls,
        config: BusConfig,
        *,
        service: str,
        instance: str,
        metrics: BusMetrics | None = None,
    ) -> Bus:
        """Connect, giving up after ``connect_attempts * connect_timeout_seconds``."""
        nc = NATS()

        async def on_error(exc: Exception) -> None:
            log.warning("nats error", extra={"error": str(exc) or type(exc).__name__})

        async def on_disconnect() -> None:
            if nc.is_closed or nc.is_draining:
                return
            log.warning("nats disconnected")
            if metrics:
                metrics.connected.set(0)

        async def on_reconnect() -> None:
            log.info("nats reconnected")
            if metrics:
                metrics.connected.set(1)

        bound = config.connect_timeout_seconds * config.connect_attempts
        try:
            await asyncio.wait_for(
                nc.connect(
                    servers=[config.url],
                    name=instance,
                    connect_timeout=max(1, round(config.connect_timeout_seconds)),
                    reconnect_time_wait=max(1, min(2, round(config.connect_timeout_seconds))),
                    max_reconnect_attempts=-1,
                    error_cb=on_error,
                    disconnected_cb=on_disconnect,
                    reconnected_cb=on_reconnect,
                    drain_timeout=max(1, round(config.drain_timeout_seconds)),
                ),
                timeout=bound,
            )
        except (TimeoutError, OSError, Exception) as exc:
            with contextlib.suppress(Exception):
                await nc.close()
            raise BusConnectError(f"cannot reach NATS at {config.url} within {bound:.0f}s: {exc!r}") from exc
        if metrics:
            metrics.connected.set(1)
        return cls(
            nc,
            service=service,
            subjects=Subjects(prefix=config.subject_prefix),
            metrics=metrics,
            drain_timeout=config.drain_timeout_seconds,
        )

    @property
    def connected(self) -> bool:
        return bool(self.nc.is_connected)

    # -- publishing -------------------------------------------------------------------------

    async def publish(self, subject: str, message: msgspec.Struct) -> None:
        """Publish on core NATS (at most once)."""
        await self.nc.publish(subject, encode(message))
        if self._metrics:
            self._metrics.published.labels(_subject_family(subject)).inc()

    async def publish_persistent(self, subject: str, message: msgspec.Struct, *, msg_id: str = "") -> None:
        """Publish to a JetStream stream and wait for the store's ack; ``msg_id`` de-duplicates."""
        headers = {"Nats-Msg-Id": msg_id} if msg_id else None
        await self.js.publish(subject, encode(message), headers=headers)
        if self._metrics:
            self._metrics.published.labels(_subject_family(subject)).inc()

    async def dead_letter(self, subject: str, payload: bytes, reason: str) -> None:
        """Keep an unprocessable message, with the reason, on this service's dead-letter subject."""
        log.warning("dead-lettered message", extra={"subject": subject, "reason": reason})
        if self._metrics:
            self._metrics.dead_lettered.labels(_subject_family(subject)).inc()
        letter = dead_letter_for(self.service, subject, payload, reason)
        try:
            await self.nc.publish(self.subjects.dead_letter(self.service), encode(letter))
        except Exception:  # the bus is going away; the log line above keeps the reason
            log.exception("could not publish dead letter", extra={"subject": subject})

    # -- subscribing ------------------------------------------------------------------------

    async def subscribe(
        self,
        subject: str,
        decoder: MessageDecoder[T],
        handler: Handler[T],
        *,
        queue: str = "",
    ) -> Subscription:
        """Subscribe on core NATS; decode each message or dead-letter it, then call ``handler``."""

        async def on_message(msg: Msg) -> None:
            if self._metrics:
                self._metrics.received.labels(_subject_family(msg.subject)).inc()
            try:
                message = decoder.decode(msg.data)
            except MalformedMessage as exc:
                await self.dead_letter(msg.subject, msg.data, str(exc))
                return
            try:
                await handler(message, msg)
            except PermanentError as exc:
                await self.dead_letter(msg.subject, msg.data, str(exc))
            except Exception:
                log.exception("handler failed", extra={"subject": msg.subject})

        subscription = await self.nc.subscribe(subject, queue=queue, cb=on_message)
        await self.subscriptions_registered()
        return subscription

    async def subscriptions_registered(self) -> None:
        """Return once the server has every subscription made so far on this connection.

        One ``flush()`` is not enough with nats-py 2.16: it writes its PING straight to the socket while
        SUB commands may still wait in the client's buffer for its flusher task, so the PONG can come back
        before the server has read the SUBs and a message published right after is dropped. While the
        first flush waits for its PONG the flusher writes the buffered SUBs; the second PING goes out
        after them, so its PONG means the server has them.
        """
        await self.nc.flush()
        await self.nc.flush()

    # -- JetStream --------------------------------------------------------------------------

    async def ensure_stream(self, config: StreamConfig) -> None:
        """Create a stream, or update it when it exists with other settings."""
        try:
            await self.js.add_stream(config)
        except BadRequestError:
            await self.js.update_stream(config)

    async def ensure_core_streams(self) -> None:
        """The streams scalebus relies on: decisions, results and dead letters."""
        s = self.subjects
        await self.ensure_stream(
            StreamConfig(
                name=s.stream_name("decisions"),
                subjects=[s.decisions],
                max_age=3600.0,
                duplicate_window=120.0,
            )
        )
        await self.ensure_stream(StreamConfig(name=s.stream_name("results"), subjects=[s.results_all], max_age=86400.0))
        await self.ensure_stream(
            StreamConfig(name=s.stream_name("deadletter"), subjects=[s.dead_letter_all], max_age=7 * 86400.0)
        )

    async def consume(
        self,
        subject: str,
        durable: str,
        decoder: MessageDecoder[T],
        handler: Handler[T],
        *,
        stream: str,
        stop: asyncio.Event,
        batch: int = 16,
        ack_wait: float = 30.0,
        max_deliver: int = 20,
    ) -> None:
        """Pull messages from a durable consumer until ``stop`` is set.

        The handler's outcome decides the ack: success -> ack, RetryableError -> nak(delay),
        PermanentError or a malformed payload -> term + dead letter, anything else -> nak(1 s).
        """
        sub = await self.js.pull_subscribe(
            subject,
            durable=durable,
            stream=stream,
            config=ConsumerConfig(ack_wait=ack_wait, max_deliver=max_deliver),
        )
        self._pull_subscriptions.append(sub)
        try:
            while not stop.is_set():
                try:
                    msgs = await sub.fetch(batch, timeout=0.5)
                except TimeoutError:
                    continue
                except Exception as exc:
                    if stop.is_set():
                        break
                    log.warning("fetch failed", extra={"subject": subject, "error": repr(exc)})
                    await asyncio.sleep(0.5)
                    continue
                await self._handle_fetched(msgs, decoder, handler, ack_wait)
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
            with contextlib.suppress(ValueError):
                self._pull_subscriptions.remove(sub)

    async def _handle_fetched(
        self, msgs: list[Msg], decoder: MessageDecoder[T], handler: Handler[T], ack_wait: float
    ) -> None:
        """Handle a fetched batch in order; the messages still waiting are told "in progress" every
        ``ack_wait / 3`` so the server does not redeliver them to another consumer meanwhile."""
        loop = asyncio.get_running_loop()
        refreshed = loop.time()
        for index, msg in enumerate(msgs):
            if loop.time() - refreshed >= ack_wait / 3:
                for waiting in msgs[index:]:
                    with contextlib.suppress(Exception):
                        await waiting.in_progress()
                refreshed = loop.time()
            await self._handle_persistent(msg, decoder, handler)

    async def _handle_persistent(self, msg: Msg, decoder: MessageDecoder[T], handler: Handler[T]) -> None:
        if self._metrics:
            self._metrics.received.labels(_subject_family(msg.subject)).inc()
        try:
            message = decoder.decode(msg.data)
            await handler(message, msg)
        except PermanentError as exc:
            await self.dead_letter(msg.subject, msg.data, str(exc))
            await msg.term()
        except RetryableError as exc:
            log.info("retrying message later", extra={"subject": msg.subject, "reason": str(exc)})
            await msg.nak(delay=exc.delay)
        except Exception:
            log.exception("handler failed; will be redelivered", extra={"subject": msg.subject})
            await msg.nak(delay=1.0)
        else:
            await msg.ack()

    # -- lifecycle --------------------------------------------------------------------------

    def spawn(self, coro: Awaitable[None]) -> asyncio.Task[None]:
        """Run a background task tied to this bus (cancelled on close)."""
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def close(self) -> None:
        """Unsubscribe pull subscriptions first (drain hangs on them otherwise), then drain."""
        for sub in list(self._pull_subscriptions):
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        await asyncio.gather(*(cancel_and_wait(task) for task in list(self._tasks)))
        if self.nc.is_closed:
            return
        try:
            await asyncio.wait_for(self.nc.drain(), timeout=self._drain_timeout + 1.0)
        except Exception:
            log.warning("nats drain did not finish; closing")
            with contextlib.suppress(Exception):
                await self.nc.close()


def json_payload(message: msgspec.Struct) -> dict[str, Any]:
    """A message as plain JSON data (for logs and tests)."""
    result: dict[str, Any] = msgspec.to_builtins(message)
    return result
