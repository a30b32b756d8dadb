"""Pod CPU/memory from `metrics.k8s.io` through kubernetes-asyncio, against an HTTP-level stand-in.

Why a stand-in: a real Kubernetes API server with metrics-server needs kube-apiserver, etcd and
kubelets, none of which can be installed from the registries this project may use (no Debian or
PyPI package ships them).  The stand-in is a real aiohttp server on 127.0.0.1 that answers the two
API paths the source calls with the JSON shapes the Kubernetes API documents, and records the
requests so the tests can check what the client sent.  The client side (kubeconfig loading,
kubernetes-asyncio's request building and decoding, quantity parsing) is the real code.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest
from aiohttp import web
from nats.aio.client import Client as NATS

from services.collector.config import KubernetesSourceConfig
from services.collector.discovery import ReplicaDirectory
from services.collector.sources.base import SourceContext, SourceError
from services.collector.sources.kubernetes import KubernetesPodSource
from shared.clock import ManualClock


def pod_metrics(name: str, *usages: tuple[str, str]) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "shop", "labels": {"app": "web"}},
        "timestamp": "2026-01-02T03:04:05Z",
        "window": "15s",
        "containers": [{"name": f"c{i}", "usage": {"cpu": cpu, "memory": mem}} for i, (cpu, mem) in enumerate(usages)],
    }


def pod(name: str, *requests: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "shop"},
        "spec": {
            "containers": [
                {"name": f"c{i}", "image": "web:1", "resources": {"requests": r} if r else {}}
                for i, r in enumerate(requests)
            ]
        },
        "status": {"phase": "Running"},
    }


class FakeApiServer:
    """Answers GET /apis/metrics.k8s.io/v1beta1/namespaces/{ns}/pods and GET /api/v1/namespaces/{ns}/pods."""

    def __init__(self) -> None:
        self.metrics: list[dict[str, Any]] = []
        self.pods: list[dict[str, Any]] = []
        self.metrics_status = 200
        self.requests: list[tuple[str, str]] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def _pod_metrics(self, request: web.Request) -> web.Response:
        self.requests.append((request.path, request.query.get("labelSelector", "")))
        if self.metrics_status != 200:
            body = {"kind": "Status", "status": "Failure", "reason": "ServiceUnavailable", "code": self.metrics_status}
            return web.json_response(body, status=self.metrics_status)
        return web.json_response(
            {"kind": "PodMetricsList", "apiVersion": "metrics.k8s.io/v1beta1", "items": self.metrics}
        )

    async def _pods(self, request: web.Request) -> web.Response:
        self.requests.append((request.path, request.query.get("labelSelector", "")))
        return web.json_response({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": self.pods})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/apis/metrics.k8s.io/v1beta1/namespaces/{namespace}/pods", self._pod_metrics)
        app.router.add_get("/api/v1/namespaces/{namespace}/pods", self._pods)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture
async def api_server() -> AsyncIterator[FakeApiServer]:
    server = FakeApiServer()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def kubeconfig(directory: Path, server: str) -> Path:
    path = directory / "kubeconfig.yaml"
    path.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: test\n"
        f"clusters:\n- name: test\n  cluster:\n    server: {server}\n"
        "contexts:\n- name: test\n  context:\n    cluster: test\n    user: test\n"
        "users:\n- name: test\n  user:\n    token: test-token\n"
    )
    return path


def make_source(
    api_server: FakeApiServer, http: aiohttp.ClientSession, tmp_path: Path, **overrides: object
) -> KubernetesPodSource:
    kubeconfig(tmp_path, api_server.url)
    data: dict[str, object] = {
        "type": "kubernetes",
        "name": "pods",
        "namespace": "shop",
        "label_selector": "app=web",
        "kubeconfig": "kubeconfig.yaml",  # relative: resolved against the config file's directory
    }
    data.update(overrides)
    context = SourceContext(
        target="shop/web", clock=ManualClock(), http=http, replicas=ReplicaDirectory(), nats=NATS(), config_dir=tmp_path
    )
    return KubernetesPodSource(msgspec.convert(data, KubernetesSourceConfig), context)


async def test_usage_and_requests_are_summed_over_containers_per_pod(
    api_server: FakeApiServer, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    api_server.metrics = [
        pod_metrics("web-a", ("250m", "64Mi"), ("50m", "16Mi")),
        pod_metrics("web-b", ("1", "1Gi")),
    ]
    api_server.pods = [
        pod("web-a", {"cpu": "200m", "memory": "128Mi"}, {"cpu": "100m"}),
        pod("web-b", {"cpu": "1500m", "memory": "2Gi"}),
    ]
    source = make_source(api_server, http, tmp_path)
    try:
        samples = await source.collect()
    finally:
        await source.close()
    values = {(s.name, s.labels["pod"]): s.value for s in samples}
    assert values == pytest.approx(
        {
            ("cpu", "web-a"): 0.3,
            ("memory", "web-a"): 80 * 2**20,
            ("cpu_request", "web-a"): 0.3,
            ("memory_request", "web-a"): 128 * 2**20,
            ("cpu", "web-b"): 1.0,
            ("memory", "web-b"): 2**30,
            ("cpu_request", "web-b"): 1.5,
            ("memory_request", "web-b"): 2 * 2**30,
        }
    )
    cpu = next(s for s in samples if s.name == "cpu")
    assert cpu.unit == "cores" and cpu.timestamp == 1767323045.0  # the metrics' own timestamp
    assert sorted(api_server.requests) == [
        ("/api/v1/namespaces/shop/pods", "app=web"),
        ("/apis/metrics.k8s.io/v1beta1/namespaces/shop/pods", "app=web"),
    ]


async def test_a_bad_quantity_is_an_error_for_that_pod_only(
    api_server: FakeApiServer, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    api_server.metrics = [pod_metrics("web-a", ("lots", "64Mi")), pod_metrics("web-b", ("100m", "1Mi"))]
    source = make_source(api_server, http, tmp_path, include_requests=False)
    try:
        samples = await source.collect()
    finally:
        await source.close()
    quality = {(s.name, s.labels["pod"]): (s.quality, s.error) for s in samples}
    assert quality[("cpu", "web-a")] == ("error", "pod web-a: not a quantity: 'lots'")
    assert quality[("cpu", "web-b")] == ("ok", "")
    assert {s.name for s in samples} == {"cpu", "memory"}


async def test_an_api_error_fails_the_source_with_the_status(
    api_server: FakeApiServer, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    api_server.metrics_status = 503
    source = make_source(api_server, http, tmp_path, include_requests=False)
    try:
        with pytest.raises(SourceError, match="HTTP 503"):
            await source.collect()
    finally:
        await source.close()


async def test_a_missing_kubeconfig_fails_the_source_with_the_reason(
    api_server: FakeApiServer, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    source = make_source(api_server, http, tmp_path, kubeconfig="nowhere.yaml")
    try:
        with pytest.raises(SourceError, match="kubernetes config"):
            await source.collect()
    finally:
        await source.close()


async def test_without_a_kubeconfig_outside_a_cluster_the_source_fails_with_the_reason(
    api_server: FakeApiServer, http: aiohttp.ClientSession, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No kubeconfig means in-cluster configuration, which needs the service environment of a pod."""
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_PORT", raising=False)
    source = make_source(api_server, http, tmp_path, kubeconfig="")
    try:
        with pytest.raises(SourceError, match="kubernetes config: Service host/port is not set"):
            await source.collect()
    finally:
        await source.close()
