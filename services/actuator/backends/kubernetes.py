"""The Kubernetes backend: the ``/scale`` subresource of Deployments, StatefulSets and custom resources.

A change is a read-modify-write: read the scale (with its ``resourceVersion``), write the new
replica count carrying that version, and on 409 Conflict read again and retry (up to
``conflict_retries`` times).  Built-in kinds are written with PUT (``replace_*_scale``); custom
resources with a JSON merge patch (``patch_namespaced_custom_object_scale`` with
``_content_type="application/merge-patch+json"`` — a dict body would otherwise go out as a JSON
patch).  HTTP errors carry their retry meaning: 403/404/422 (and other 4xx) are permanent,
429/5xx and timeouts are transient.  A background poller reads the scale to notice changes made by
others (``changed`` is set when the observation differs).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
from kubernetes_asyncio import client as k8s
from kubernetes_asyncio import config as k8s_config
from kubernetes_asyncio import watch
from kubernetes_asyncio.client.exceptions import ApiException

from services.actuator.backends.base import BackendError, Observed, PermanentBackendError, TransientBackendError
from services.actuator.config import KubernetesBackendConfig, KubernetesClientConfig
from shared.clock import Clock
from shared.schemas import ReplicaStatus

log = logging.getLogger(__name__)

T = TypeVar("T")

MERGE_PATCH = "application/merge-patch+json"
_PERMANENT_STATUSES = {400, 401, 403, 404, 405, 410, 415, 422}
_WATCH_SECONDS = 300


class KubernetesSession:
    """One API client shared by every Kubernetes target of the actuator."""

    def __init__(self, api_client: Any, settings: KubernetesClientConfig, host: str) -> None:
        self.api_client = api_client
        self.settings = settings
        self.host = host
        self.apps = k8s.AppsV1Api(api_client)
        self.core = k8s.CoreV1Api(api_client)
        self.custom = k8s.CustomObjectsApi(api_client)

    @classmethod
    async def open(cls, settings: KubernetesClientConfig, *, base_dir: Path) -> KubernetesSession:
        """In-cluster config when asked (or when running in a pod without a kubeconfig), else the kubeconfig."""
        configuration = k8s.Configuration()
        in_pod = bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and not settings.kubeconfig
        if settings.in_cluster or in_pod:
            k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        else:
            config_file = str(base_dir / settings.kubeconfig) if settings.kubeconfig else None
            await k8s_config.load_kube_config(
                config_file=config_file, context=settings.context or None, client_configuration=configuration
            )
        return cls(k8s.ApiClient(configuration), settings, str(configuration.host))

    async def close(self) -> None:
        await self.api_client.close()


class _Scale:
    """The scale subresource as read: replicas asked for, replicas observed, selector and version."""

    def __init__(self, spec: int, status: int, selector: str, resource_version: str) -> None:
        self.spec = spec
        self.status = status
        self.selector = selector
        self.resource_version = resource_version


def classify(exc: BaseException, what: str) -> BackendError:
    """Map a client-side failure to a transient or permanent backend error."""
    if isinstance(exc, ApiException):
        status = int(exc.status or 0)
        reason = f"{what}: HTTP {status} {exc.reason or ''}".strip()
        if status in _PERMANENT_STATUSES or (400 <= status < 500 and status not in (408, 409, 429)):
            return PermanentBackendError(reason, status=status)
        return TransientBackendError(reason, status=status, retry_after=_retry_after(exc))
    if isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError):
        return TransientBackendError(f"{what}: timed out")
    if isinstance(exc, aiohttp.ClientError | OSError):
        return TransientBackendError(f"{what}: {type(exc).__name__}: {exc}")
    # Anything else (an answer the client cannot parse, a bad argument) will not heal by itself.
    return PermanentBackendError(f"{what}: {type(exc).__name__}: {exc}")


class KubernetesBackend:
    """One Kubernetes object with a ``/scale`` subresource."""

    kind = "kubernetes"
    success_status: int | None = 200
    """The client raises on anything but 2xx, and the API server answers these reads, PUTs and PATCHes 200."""

    def __init__(
        self, target: str, config: KubernetesBackendConfig, session: KubernetesSession, *, clock: Clock
    ) -> None:
        self._target = target
        self._config = config
        self._session = session
        self._clock = clock
        self._timeout = session.settings.request_timeout_seconds
        group, _, version = config.api_version.rpartition("/")
        self._group = group
        self._version = version
        self._plural = config.plural or f"{config.kind.lower()}s"
        self._builtin = config.api_version == "apps/v1" and config.kind in ("Deployment", "StatefulSet")
        self.endpoint = session.host
        self.changed = asyncio.Event()
        self._last: Observed | None = None
        self._background: list[asyncio.Task[None]] = []

    @property
    def _what(self) -> str:
        return f"{self._config.kind} {self._config.namespace}/{self._config.name}"

    # -- Backend protocol ---------------------------------------------------------------------

    async def start(self) -> None:
        self._background = [
            asyncio.create_task(self._poll(), name=f"k8s-poll-{self._target}"),
            asyncio.create_task(self._watch(), name=f"k8s-watch-{self._target}"),
        ]

    async def stop(self) -> None:
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        self._background = []

    async def read(self) -> Observed:
        scale = await self._read_scale()
        ready = scale.status
        if self._builtin:
            ready = await self._ready_replicas()
        replicas: tuple[ReplicaStatus, ...] = ()
        if self._session.settings.list_pods and scale.selector:
            replicas = await self._pods(scale.selector)
        observed = Observed(
            spec_replicas=scale.spec, current_replicas=scale.status, ready_replicas=ready, replicas=replicas
        )
        if observed != self._last:
            self._last = observed
            self.changed.set()
        return observed

    async def scale(self, replicas: int) -> Observed:
        """Read-modify-write with the read's resourceVersion; a 409 means re-read and try again."""
        attempts = self._session.settings.conflict_retries + 1
        for attempt in range(attempts):
            current = await self._read_scale()
            if current.spec == replicas:
                break
            try:
                await self._write_scale(replicas, current.resource_version)
            except ApiException as exc:
                if exc.status == 409:
                    log.info(
                        "scale conflict; re-reading",
                        extra={
                            "target": self._target,
                            "attempt": attempt + 1,
                            "resource_version": current.resource_version,
                        },
                    )
                    continue
                raise classify(exc, f"scale {self._what}") from exc
            except Exception as exc:
                raise classify(exc, f"scale {self._what}") from exc
            break
        else:
            raise TransientBackendError(
                f"scale {self._what}: still conflicting after {attempts} read-modify-write attempts", status=409
            )
        self.changed.set()
        try:
            return await self.read()
        except BackendError as exc:
            # The write was accepted (or nothing needed writing): a failed read afterwards must not turn an
            # applied change into a failure (retried as a whole, counted by the breaker).
            log.warning("scaled, but reading the result failed", extra={"target": self._target, "error": str(exc)})
            ready = self._last.ready_replicas if self._last is not None else 0
            return Observed(spec_replicas=replicas, current_replicas=current.status, ready_replicas=ready)

    # -- API calls ----------------------------------------------------------------------------

    async def _call(self, what: str, request: Callable[[], Awaitable[T]]) -> T:
        try:
            return await request()
        except Exception as exc:
            raise classify(exc, what) from exc

    async def _read_scale(self) -> _Scale:
        c, timeout = self._config, self._timeout
        what = f"read scale of {self._what}"
        if c.kind == "Deployment" and self._builtin:
            scale = await self._call(
                what,
                lambda: self._session.apps.read_namespaced_deployment_scale(
                    c.name, c.namespace, _request_timeout=timeout
                ),
            )
            return _from_model(scale)
        if c.kind == "StatefulSet" and self._builtin:
            scale = await self._call(
                what,
                lambda: self._session.apps.read_namespaced_stateful_set_scale(
                    c.name, c.namespace, _request_timeout=timeout
                ),
            )
            return _from_model(scale)
        raw = await self._call(
            what,
            lambda: self._session.custom.get_namespaced_custom_object_scale(
                self._group, self._version, c.namespace, self._plural, c.name, _request_timeout=timeout
            ),
        )
        return _from_dict(raw)

    async def _write_scale(self, replicas: int, resource_version: str) -> None:
        """One write; raises ApiException (409 included) or a transport error for the caller to judge."""
        c, timeout = self._config, self._timeout
        if self._builtin:
            body = k8s.V1Scale(
                api_version="autoscaling/v1",
                kind="Scale",
                metadata=k8s.V1ObjectMeta(name=c.name, namespace=c.namespace, resource_version=resource_version),
                spec=k8s.V1ScaleSpec(replicas=replicas),
            )
            if c.kind == "Deployment":
                await self._session.apps.replace_namespaced_deployment_scale(
                    c.name, c.namespace, body, _request_timeout=timeout
                )
            else:
                await self._session.apps.replace_namespaced_stateful_set_scale(
                    c.name, c.namespace, body, _request_timeout=timeout
                )
            return
        patch = {"metadata": {"resourceVersion": resource_version}, "spec": {"replicas": replicas}}
        # Without an explicit content type the client would send this dict as a JSON patch.
        options: dict[str, Any] = {"_content_type": MERGE_PATCH, "_request_timeout": timeout}
        await self._session.custom.patch_namespaced_custom_object_scale(
            self._group, self._version, c.namespace, self._plural, c.name, patch, **options
        )

    async def _ready_replicas(self) -> int:
        c, timeout = self._config, self._timeout
        what = f"read {self._what}"
        obj: Any
        if c.kind == "Deployment":
            obj = await self._call(
                what,
                lambda: self._session.apps.read_namespaced_deployment(c.name, c.namespace, _request_timeout=timeout),
            )
        else:
            obj = await self._call(
                what,
                lambda: self._session.apps.read_namespaced_stateful_set(c.name, c.namespace, _request_timeout=timeout),
            )
        status = obj.status
        return int((status.ready_replicas if status is not None else 0) or 0)

    async def _pods(self, selector: str) -> tuple[ReplicaStatus, ...]:
        c, timeout = self._config, self._timeout
        pods = await self._call(
            f"list pods of {self._what}",
            lambda: self._session.core.list_namespaced_pod(
                c.namespace, label_selector=selector, _request_timeout=timeout
            ),
        )
        return tuple(_replica(pod) for pod in pods.items or ())

    async def _watch(self) -> None:
        """Watch the object (field selector on its name); every event triggers a read of the scale.

        The watch makes changes by others visible within moments; the poller is the resync that
        covers a watch that is not allowed (RBAC) or keeps failing.
        """
        c, apps = self._config, self._session.apps
        lister: Callable[..., Awaitable[Any]]
        args: tuple[str, ...]
        if self._builtin:
            lister = apps.list_namespaced_deployment if c.kind == "Deployment" else apps.list_namespaced_stateful_set
            args = (c.namespace,)
        else:
            lister = self._session.custom.list_namespaced_custom_object
            args = (self._group, self._version, c.namespace, self._plural)
        while True:
            try:
                async with watch.Watch() as stream:
                    async for _event in stream.stream(
                        lister, *args, field_selector=f"metadata.name={c.name}", timeout_seconds=_WATCH_SECONDS
                    ):
                        with contextlib.suppress(BackendError):
                            await self.read()
                continue  # the server ended the watch after timeout_seconds: start a new one
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.info("watch interrupted; polling meanwhile", extra={"target": self._target, "error": repr(exc)})
            await asyncio.sleep(self._session.settings.poll_interval_seconds)

    async def _poll(self) -> None:
        while True:
            with contextlib.suppress(BackendError):
                await self.read()
            await asyncio.sleep(self._session.settings.poll_interval_seconds)


def _retry_after(exc: ApiException) -> float | None:
    """The ``Retry-After`` header of a 429/503 in seconds (the API server sends whole seconds)."""
    headers: Any = exc.headers or {}
    value = headers.get("Retry-After") if hasattr(headers, "get") else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _from_model(scale: Any) -> _Scale:
    spec = scale.spec.replicas if scale.spec is not None else 0
    status = scale.status
    return _Scale(
        spec=int(spec or 0),
        status=int((status.replicas if status is not None else 0) or 0),
        selector=str((status.selector if status is not None else "") or ""),
        resource_version=str(scale.metadata.resource_version or ""),
    )


def _from_dict(scale: dict[str, Any]) -> _Scale:
    spec = scale.get("spec") or {}
    status = scale.get("status") or {}
    metadata = scale.get("metadata") or {}
    return _Scale(
        spec=int(spec.get("replicas") or 0),
        status=int(status.get("replicas") or 0),
        selector=str(status.get("selector") or ""),
        resource_version=str(metadata.get("resourceVersion") or ""),
    )


def _replica(pod: Any) -> ReplicaStatus:
    status = pod.status
    conditions = (status.conditions if status is not None else None) or []
    ready = any(cond.type == "Ready" and cond.status == "True" for cond in conditions)
    phase = str((status.phase if status is not None else "") or "Pending")
    if pod.metadata.deletion_timestamp is not None:
        phase = "Terminating"
    started = status.start_time if status is not None else None
    ip = (status.pod_ip if status is not None else "") or ""
    return ReplicaStatus(
        name=str(pod.metadata.name),
        phase=phase if phase in ("Pending", "Running", "Succeeded", "Failed", "Terminating") else "Pending",  # type: ignore[arg-type]
        ready=ready,
        started_at=started.timestamp() if started is not None else 0.0,
        endpoint=f"http://{ip}" if ip else "",
    )
