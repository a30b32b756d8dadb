"""Pod CPU and memory from the Kubernetes resource metrics API (`metrics.k8s.io/v1beta1`).

Usage per pod is the sum over its containers, as metrics-server reports it; requests come from
the pods' specs (core API) so the decider can compute utilization.  Quantities (`250m`, `64Mi`)
are parsed with :func:`shared.quantity.parse_quantity`.  Samples: `cpu` (cores), `memory`
(bytes), `cpu_request`, `memory_request`, each with label `pod`.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime
from pathlib import Path
from typing import Any

from kubernetes_asyncio import client as k8s
from kubernetes_asyncio import config as k8s_config
from kubernetes_asyncio.client.exceptions import ApiException

from services.collector.config import KubernetesSourceConfig
from services.collector.samples import error_sample
from services.collector.sources.base import SourceContext, SourceError
from shared.quantity import QuantityError, parse_quantity
from shared.schemas import MetricSample

METRICS_GROUP, METRICS_VERSION = "metrics.k8s.io", "v1beta1"


def _timestamp(text: object, default: float) -> float:
    if not isinstance(text, str) or not text:
        return default
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return default


def kubeconfig_path(configured: str, config_dir: Path) -> Path | None:
    """The kubeconfig file (`~` expanded, relative to the config file's directory); None: in-cluster."""
    if not configured:
        return None
    path = Path(configured).expanduser()
    return path if path.is_absolute() else config_dir / path


def container_totals(containers: list[Any], field: str) -> tuple[float, float]:
    """Sum of `cpu` and `memory` in each container's ``field`` (`usage` or `requests`); QuantityError if bad."""
    cpu = memory = 0.0
    for container in containers:
        values = container.get(field) or {}
        cpu += parse_quantity(values.get("cpu", 0))
        memory += parse_quantity(values.get("memory", 0))
    return cpu, memory


class KubernetesPodSource:
    """Per-pod resource usage (and requests) of the pods selected by `label_selector`."""

    def __init__(self, config: KubernetesSourceConfig, context: SourceContext) -> None:
        self._config = config
        self._context = context
        self._api: Any = None
        self._kubeconfig = kubeconfig_path(config.kubeconfig, context.config_dir)
        names = ["cpu", "memory"]
        if config.include_requests:
            names += ["cpu_request", "memory_request"]
        self.metric_names = tuple(names)

    @property
    def name(self) -> str:
        return self._config.name

    async def _client(self) -> Any:
        if self._api is None:
            if self._kubeconfig is not None:
                self._api = await k8s_config.new_client_from_config(
                    config_file=str(self._kubeconfig), context=self._config.context or None, persist_config=False
                )
            else:
                configuration = k8s.Configuration()
                # Synchronous file reads (service-account token and CA): off the event loop.
                await asyncio.to_thread(k8s_config.load_incluster_config, client_configuration=configuration)
                self._api = k8s.ApiClient(configuration=configuration)
        return self._api

    async def _pod_metrics(self, api: Any) -> list[dict[str, Any]]:
        result = await k8s.CustomObjectsApi(api).list_namespaced_custom_object(
            METRICS_GROUP,
            METRICS_VERSION,
            self._config.namespace,
            "pods",
            label_selector=self._config.label_selector,
            _request_timeout=self._config.timeout_seconds,
        )
        items = result.get("items") if isinstance(result, dict) else None
        return [item for item in items or [] if isinstance(item, dict)]

    async def _pod_requests(self, api: Any) -> dict[str, list[dict[str, Any]]]:
        pods = await k8s.CoreV1Api(api).list_namespaced_pod(
            self._config.namespace,
            label_selector=self._config.label_selector,
            _request_timeout=self._config.timeout_seconds,
        )
        return {
            pod.metadata.name: [
                {"requests": (c.resources.requests if c.resources else None) or {}} for c in pod.spec.containers
            ]
            for pod in pods.items
            if pod.metadata and pod.spec
        }

    async def collect(self) -> list[MetricSample]:
        try:
            api = await self._client()
            if self._config.include_requests:
                metrics, requests = await asyncio.gather(self._pod_metrics(api), self._pod_requests(api))
            else:
                metrics, requests = await self._pod_metrics(api), {}
        except ApiException as exc:
            raise SourceError(f"kubernetes API: HTTP {exc.status} {exc.reason}".strip()) from exc
        except k8s_config.ConfigException as exc:
            raise SourceError(f"kubernetes config: {exc}") from exc
        now = self._context.clock.now()
        samples: list[MetricSample] = []
        for item in metrics:
            pod = str((item.get("metadata") or {}).get("name", ""))
            if not pod:
                continue
            labels = {"pod": pod}
            measured_at = _timestamp(item.get("timestamp"), now)
            try:
                cpu, memory = container_totals(item.get("containers") or [], "usage")
            except QuantityError as exc:
                samples.extend(self._errors(("cpu", "memory"), f"pod {pod}: {exc}", labels, now))
            else:
                samples.append(self._sample("cpu", cpu, "cores", labels, measured_at))
                samples.append(self._sample("memory", memory, "bytes", labels, measured_at))
            if not self._config.include_requests:
                continue
            if pod not in requests:
                samples.extend(self._errors(("cpu_request", "memory_request"), f"pod {pod} not found", labels, now))
                continue
            try:
                cpu_request, memory_request = container_totals(requests[pod], "requests")
            except QuantityError as exc:
                samples.extend(self._errors(("cpu_request", "memory_request"), f"pod {pod}: {exc}", labels, now))
            else:
                samples.append(self._sample("cpu_request", cpu_request, "cores", labels, now))
                samples.append(self._sample("memory_request", memory_request, "bytes", labels, now))
        return samples

    def _sample(self, name: str, value: float, unit: str, labels: dict[str, str], at: float) -> MetricSample:
        return MetricSample(name=name, value=value, timestamp=at, unit=unit, labels=labels, source=self.name)

    def _errors(self, names: tuple[str, ...], error: str, labels: dict[str, str], now: float) -> list[MetricSample]:
        return [error_sample(name, source=self.name, error=error, timestamp=now, labels=labels) for name in names]

    async def close(self) -> None:
        api, self._api = self._api, None
        if api is not None:
            with contextlib.suppress(Exception):
                await api.close()
