"""The Kubernetes backend through kubernetes-asyncio, over real HTTP, against an API stand-in.

The stand-in is an aiohttp server implementing the few endpoints the backend calls (scale
subresources of Deployments, StatefulSets and a custom resource, Deployment/StatefulSet status, pod
list).  It is a stand-in because no Kubernetes control plane runs in this test environment yet; it
enforces what matters here the way the API server does: ``resourceVersion`` preconditions (409),
the merge-patch content type on custom-resource scale patches (415 otherwise), and it injects 5xx,
429, 403, 404, 422 and hangs on demand.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml
from aiohttp import web
from prometheus_client import CollectorRegistry

from services.actuator.backends.base import PermanentBackendError, TransientBackendError
from services.actuator.backends.kubernetes import MERGE_PATCH, KubernetesBackend, KubernetesSession
from services.actuator.breaker import CircuitBreaker
from services.actuator.config import ActuatorConfig, KubernetesBackendConfig, KubernetesClientConfig, RetryConfig
from services.actuator.executor import Executor, TargetRuntime
from services.actuator.idempotency import DryRunIdempotencyStore
from services.actuator.intake import IncomingDecision
from services.actuator.metrics import ActuatorMetrics
from services.actuator.retry import call_with_retry
from shared.clock import ManualClock
from shared.schemas import Alert, ExecutionResult


@dataclass
class ScaledObject:
    spec_replicas: int
    resource_version: int = 1
    ready: int = -1
    """Ready replicas reported in status; -1 means equal to spec."""


@dataclass
class Fault:
    method: str
    status: int = 0
    """HTTP status to answer with; 0 means hang for ``hang_seconds`` instead."""
    hang_seconds: float = 0.0
    retry_after: str = ""
    skip: int = 0
    """Matching requests let through before this fault strikes."""


@dataclass
class ApiStandIn:
    """An HTTP stand-in for the Kubernetes API endpoints the backend uses."""

    objects: dict[tuple[str, str, str], ScaledObject] = field(default_factory=dict)
    faults: list[Fault] = field(default_factory=list)
    watchers: list[asyncio.Queue[str]] = field(default_factory=list)
    concurrent_writes: int = 0
    """After each of the next N scale reads, another writer bumps the object (the next write conflicts)."""
    requests: list[tuple[str, str, str, Any]] = field(default_factory=list)
    url: str = ""
    _runner: web.AppRunner | None = None

    def add(self, resource: str, name: str, replicas: int, *, namespace: str = "default") -> ScaledObject:
        obj = ScaledObject(spec_replicas=replicas)
        self.objects[(resource, namespace, name)] = obj
        return obj

    def modify(self, resource: str, name: str, replicas: int, *, namespace: str = "default") -> None:
        """Someone else changes the object (``kubectl scale``): watchers get a MODIFIED event."""
        obj = self.objects[(resource, namespace, name)]
        obj.spec_replicas = replicas
        obj.resource_version += 1
        for queue in self.watchers:
            queue.put_nowait(name)

    def writes(self) -> list[tuple[str, str, str, Any]]:
        return [r for r in self.requests if r[0] in ("PUT", "PATCH")]

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/apis/apps/v1/namespaces/{ns}/{resource}/{name}/{sub}", self._apps)
        app.router.add_route("*", "/apis/{group}/{version}/namespaces/{ns}/{resource}/{name}/{sub}", self._custom)
        app.router.add_get("/api/v1/namespaces/{ns}/pods", self._pods)
        app.router.add_get("/apis/apps/v1/namespaces/{ns}/{resource}", self._watch)
        app.router.add_get("/apis/apps/v1/namespaces/{ns}/{resource}/{name}", self._apps)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        for queue in self.watchers:
            queue.put_nowait("")  # end open watches, or cleanup waits for them
        if self._runner is not None:
            await self._runner.cleanup()

    # -- handlers -------------------------------------------------------------------------------

    async def _fault(self, request: web.Request) -> web.Response | None:
        for fault in self.faults:
            if fault.method == request.method and fault.skip > 0:
                fault.skip -= 1
                return None
            if fault.method == request.method:
                self.faults.remove(fault)
                if fault.status == 0:
                    await asyncio.sleep(fault.hang_seconds)
                    return _status(504, "Timeout", "hung")
                response = _status(fault.status, _REASONS.get(fault.status, "Error"), "injected")
                if fault.retry_after:
                    response.headers["Retry-After"] = fault.retry_after
                return response
        return None

    async def _record(self, request: web.Request) -> Any:
        body = await request.json() if request.can_read_body else None
        self.requests.append((request.method, request.path, request.headers.get("Content-Type", ""), body))
        return body

    async def _apps(self, request: web.Request) -> web.Response:
        return await self._serve(request, request.match_info["resource"])

    async def _custom(self, request: web.Request) -> web.Response:
        info = request.match_info
        return await self._serve(request, f"{info['group']}/{info['resource']}")

    async def _serve(self, request: web.Request, resource: str) -> web.Response:
        body = await self._record(request)
        fault = await self._fault(request)
        if fault is not None:
            return fault
        info = request.match_info
        obj = self.objects.get((resource, info["ns"], info["name"]))
        if obj is None:
            return _status(404, "NotFound", f'{resource} "{info["name"]}" not found')
        sub = info.get("sub", "")
        if sub in ("", "status") and request.method == "GET":
            return web.json_response(self._workload(resource, info["ns"], info["name"], obj))
        if sub != "scale":
            return _status(404, "NotFound", "no such subresource")
        if request.method == "GET":
            scale = self._scale(info["ns"], info["name"], obj)
            if self.concurrent_writes > 0:
                self.concurrent_writes -= 1
                obj.resource_version += 1  # someone else wrote after our read
            return web.json_response(scale)
        if request.method == "PATCH" and request.headers.get("Content-Type", "").split(";")[0] != MERGE_PATCH:
            return _status(415, "UnsupportedMediaType", "the body of a scale patch must be a merge patch here")
        if request.method not in ("PUT", "PATCH") or not isinstance(body, dict):
            return _status(405, "MethodNotAllowed", request.method)
        wanted = ((body.get("metadata") or {}).get("resourceVersion")) or ""
        if wanted and wanted != str(obj.resource_version):
            return _status(
                409, "Conflict", "the object has been modified; please apply your changes to the latest version"
            )
        replicas = (body.get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or replicas < 0:
            return _status(422, "Invalid", "spec.replicas: Invalid value")
        obj.spec_replicas = replicas
        obj.resource_version += 1
        return web.json_response(self._scale(info["ns"], info["name"], obj))

    async def _watch(self, request: web.Request) -> web.StreamResponse:
        """``GET .../deployments?watch=true&fieldSelector=metadata.name=<name>``: a stream of JSON events."""
        await self._record(request)
        if request.query.get("watch") not in ("true", "True", "1"):
            return _status(405, "MethodNotAllowed", "only watches are served here")
        resource, namespace = request.match_info["resource"], request.match_info["ns"]
        name = request.query.get("fieldSelector", "").removeprefix("metadata.name=")
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        queue: asyncio.Queue[str] = asyncio.Queue()
        self.watchers.append(queue)
        kind = "ADDED"
        try:
            while True:
                obj = self.objects.get((resource, namespace, name))
                if obj is not None:
                    event = {"type": kind, "object": self._workload(resource, namespace, name, obj)}
                    await response.write(json.dumps(event).encode() + b"\n")
                kind = "MODIFIED"
                try:
                    changed = await asyncio.wait_for(
                        queue.get(), timeout=float(request.query.get("timeoutSeconds", "30"))
                    )
                except TimeoutError:
                    break
                if not changed:
                    break
        finally:
            self.watchers.remove(queue)
        return response

    async def _pods(self, request: web.Request) -> web.Response:
        await self._record(request)
        fault = await self._fault(request)
        if fault is not None:
            return fault
        selector = request.query.get("labelSelector", "")
        name = selector.removeprefix("app=")
        obj = next((o for (_, ns, n), o in self.objects.items() if n == name and ns == request.match_info["ns"]), None)
        count = obj.spec_replicas if obj is not None else 0
        items = [
            {
                "metadata": {"name": f"{name}-{i}", "namespace": "default", "labels": {"app": name}},
                "status": {
                    "phase": "Running",
                    "podIP": f"10.0.0.{i + 1}",
                    "conditions": [{"type": "Ready", "status": "True"}],
                },
            }
            for i in range(count)
        ]
        return web.json_response({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": items})

    @staticmethod
    def _workload(resource: str, namespace: str, name: str, obj: ScaledObject) -> dict[str, Any]:
        ready = obj.spec_replicas if obj.ready < 0 else obj.ready
        return {
            "apiVersion": "apps/v1",
            "kind": "Deployment" if resource == "deployments" else "StatefulSet",
            "metadata": {"name": name, "namespace": namespace, "resourceVersion": str(obj.resource_version)},
            "spec": {
                "replicas": obj.spec_replicas,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {"containers": [{"name": "app", "image": "example/app:1"}]},
                },
            },
            "status": {"replicas": obj.spec_replicas, "readyReplicas": ready},
        }

    @staticmethod
    def _scale(namespace: str, name: str, obj: ScaledObject) -> dict[str, Any]:
        return {
            "apiVersion": "autoscaling/v1",
            "kind": "Scale",
            "metadata": {"name": name, "namespace": namespace, "resourceVersion": str(obj.resource_version)},
            "spec": {"replicas": obj.spec_replicas},
            "status": {"replicas": obj.spec_replicas, "selector": f"app={name}"},
        }


_REASONS = {
    403: "Forbidden",
    404: "NotFound",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    502: "BadGateway",
    503: "ServiceUnavailable",
}


def _status(code: int, reason: str, message: str) -> web.Response:
    return web.json_response(
        {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message, "reason": reason, "code": code},
        status=code,
    )


@pytest.fixture
async def api() -> AsyncIterator[ApiStandIn]:
    standin = ApiStandIn()
    await standin.start()
    yield standin
    await standin.stop()


@pytest.fixture
async def session(api: ApiStandIn, tmp_path: Path) -> AsyncIterator[KubernetesSession]:
    """A client session built from a real kubeconfig file that points at the stand-in (polling every 0.1 s)."""
    opened = await open_session(api, tmp_path, poll_interval_seconds=0.1)
    yield opened
    await opened.close()


async def open_session(api: ApiStandIn, tmp_path: Path, *, poll_interval_seconds: float) -> KubernetesSession:
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "standin", "cluster": {"server": api.url}}],
        "users": [{"name": "actuator", "user": {"token": "not-a-secret"}}],
        "contexts": [{"name": "standin", "context": {"cluster": "standin", "user": "actuator"}}],
        "current-context": "standin",
    }
    (tmp_path / "kubeconfig.yaml").write_text(yaml.safe_dump(kubeconfig), encoding="utf-8")
    settings = KubernetesClientConfig(
        kubeconfig="kubeconfig.yaml",
        request_timeout_seconds=0.5,
        conflict_retries=3,
        poll_interval_seconds=poll_interval_seconds,
    )
    return await KubernetesSession.open(settings, base_dir=tmp_path)


def backend_for(session: KubernetesSession, **target: Any) -> KubernetesBackend:
    config = msgspec.convert({"type": "kubernetes", **target}, KubernetesBackendConfig)
    return KubernetesBackend("web", config, session, clock=ManualClock())


async def test_a_deployment_is_read_and_scaled_through_its_scale_subresource_with_its_resource_version(
    api: ApiStandIn, session: KubernetesSession
) -> None:
    api.add("deployments", "web", 2).ready = 1
    backend = backend_for(session, name="web")
    assert backend.endpoint == api.url

    observed = await backend.read()
    assert (observed.spec_replicas, observed.current_replicas, observed.ready_replicas) == (2, 2, 1)
    assert [r.name for r in observed.replicas] == ["web-0", "web-1"]
    assert observed.replicas[0].endpoint == "http://10.0.0.1" and observed.replicas[0].ready

    after = await backend.scale(5)
    assert after.spec_replicas == 5
    method, path, _, body = api.writes()[0]
    assert (method, path) == ("PUT", "/apis/apps/v1/namespaces/default/deployments/web/scale")
    assert body["metadata"]["resourceVersion"] == "1" and body["spec"]["replicas"] == 5
    assert api.objects[("deployments", "default", "web")].spec_replicas == 5


async def test_a_statefulset_is_scaled_through_its_scale_subresource(
    api: ApiStandIn, session: KubernetesSession
) -> None:
    api.add("statefulsets", "db", 1, namespace="data")
    backend = backend_for(session, kind="StatefulSet", namespace="data", name="db")
    assert (await backend.scale(3)).spec_replicas == 3
    assert api.writes()[0][1] == "/apis/apps/v1/namespaces/data/statefulsets/db/scale"


async def test_a_custom_resource_is_scaled_with_a_merge_patch_on_its_scale_subresource(
    api: ApiStandIn, session: KubernetesSession
) -> None:
    api.add("example.com/workers", "web", 1)
    backend = backend_for(session, api_version="example.com/v1", kind="Worker", name="web")
    assert (await backend.read()).spec_replicas == 1

    assert (await backend.scale(4)).spec_replicas == 4
    method, path, content_type, body = api.writes()[0]
    assert (method, path) == ("PATCH", "/apis/example.com/v1/namespaces/default/workers/web/scale")
    assert content_type.split(";")[0] == "application/merge-patch+json"
    assert body == {"metadata": {"resourceVersion": "1"}, "spec": {"replicas": 4}}


async def test_a_conflict_is_answered_by_re_reading_and_writing_again(
    api: ApiStandIn, session: KubernetesSession
) -> None:
    api.add("deployments", "web", 1)
    api.concurrent_writes = 2  # the first two writes lose the race
    backend = backend_for(session, name="web")

    assert (await backend.scale(3)).spec_replicas == 3
    scale_calls = [(m, rv) for m, p, _, rv in api.requests if p.endswith("/scale")]
    assert [m for m, _ in scale_calls][:6] == ["GET", "PUT", "GET", "PUT", "GET", "PUT"]
    versions = [body["metadata"]["resourceVersion"] for _, body in scale_calls if body is not None]
    assert versions == ["1", "2", "3"], "each write carries the version it just read"


async def test_a_change_accepted_by_the_api_server_is_reported_even_when_reading_it_back_fails(
    api: ApiStandIn, session: KubernetesSession
) -> None:
    api.add("deployments", "web", 2)
    api.faults.append(Fault("GET", 503, skip=1))  # the read before the write passes, the read after it fails
    backend = backend_for(session, name="web")
    after = await backend.scale(4)
    assert after.spec_replicas == 4
    assert api.objects[("deployments", "default", "web")].spec_replicas == 4
    assert len(api.writes()) == 1 and api.faults == []


async def test_a_conflict_that_outlives_the_re_reads_is_a_transient_error(
    api: ApiStandIn, session: KubernetesSession
) -> None:
    api.add("deployments", "web", 1)
    api.concurrent_writes = 100
    backend = backend_for(session, name="web")
    with pytest.raises(TransientBackendError, match="still conflicting after 4") as caught:
        await backend.scale(3)
    assert caught.value.status == 409
    assert len(api.writes()) == 4


@pytest.mark.parametrize(
    ("status", "permanent"), [(403, True), (404, True), (422, True), (429, False), (500, False), (503, False)]
)
async def test_http_errors_carry_their_retry_meaning(
    api: ApiStandIn, session: KubernetesSession, status: int, permanent: bool
) -> None:
    api.add("deployments", "web", 1)
    api.faults.append(Fault("PUT", status))
    backend = backend_for(session, name="web")
    expected = PermanentBackendError if permanent else TransientBackendError
    with pytest.raises(expected) as caught:
        await backend.scale(2)
    assert caught.value.status == status
    assert f"HTTP {status}" in str(caught.value)


async def test_a_missing_object_is_a_permanent_error_on_read(api: ApiStandIn, session: KubernetesSession) -> None:
    backend = backend_for(session, name="nosuch")
    with pytest.raises(PermanentBackendError) as caught:
        await backend.read()
    assert caught.value.status == 404


async def test_a_request_that_hangs_past_the_timeout_is_a_transient_error(
    api: ApiStandIn, session: KubernetesSession
) -> None:
    api.add("deployments", "web", 1)
    api.faults.append(Fault("PUT", 0, hang_seconds=3.0))
    backend = backend_for(session, name="web")
    with pytest.raises(TransientBackendError, match="timed out") as caught:
        await backend.scale(2)
    assert caught.value.status is None
    # Retried, it goes through once the API answers again.
    result = await call_with_retry(
        lambda: backend.scale(2), RetryConfig(attempts=3), rng=random.Random(3), sleep=_no_sleep
    )
    assert result.spec_replicas == 2


async def _no_sleep(_: float) -> None:
    return None


async def test_the_poller_notices_changes_made_by_others(api: ApiStandIn, session: KubernetesSession) -> None:
    obj = api.add("deployments", "web", 2)
    backend = backend_for(session, name="web")
    await backend.start()
    try:
        for _ in range(50):
            if backend.changed.is_set():
                break
            await asyncio.sleep(0.05)
        backend.changed.clear()
        obj.spec_replicas = 6  # someone runs kubectl scale
        for _ in range(50):
            if backend.changed.is_set():
                break
            await asyncio.sleep(0.05)
        assert backend.changed.is_set()
        assert (await backend.read()).spec_replicas == 6
    finally:
        await backend.stop()


def _executor(backend: KubernetesBackend, clock: ManualClock, alerts: list[Alert]) -> Executor:
    config = msgspec.convert(
        {
            "targets": [{"name": "web", "max_replicas": 20, "backend": {"type": "kubernetes", "name": "web"}}],
            "safety": {"min_change_interval_seconds": 0, "retry": {"attempts": 3}},
        },
        ActuatorConfig,
    )
    breaker = CircuitBreaker(failure_threshold=3, open_seconds=30.0, clock=clock)

    async def keep_result(_: ExecutionResult) -> None:
        return None

    async def keep_alert(alert: Alert) -> None:
        alerts.append(alert)

    return Executor(
        config=config,
        targets={"web": TargetRuntime(config=config.targets[0], backend=backend, breaker=breaker)},
        idempotency=DryRunIdempotencyStore(None),
        leases=None,
        metrics=ActuatorMetrics(CollectorRegistry(), "scalebus"),
        clock=clock,
        instance="k8s-test",
        publish_result=keep_result,
        publish_alert=keep_alert,
        sleep=_no_sleep,
        rng=random.Random(5),
    )


def _decision(n: int, clock: ManualClock, desired: int) -> IncomingDecision:
    return IncomingDecision(
        id=f"d{n}", target="web", current_replicas=1, desired_replicas=desired, reason="Test", decided_at=clock.now()
    )


async def test_a_5xx_storm_is_retried_then_opens_the_breaker_and_a_403_is_never_retried(
    api: ApiStandIn, session: KubernetesSession
) -> None:
    api.add("deployments", "web", 1)
    clock = ManualClock()
    alerts: list[Alert] = []
    executor = _executor(backend_for(session, name="web"), clock, alerts)

    api.faults.extend(Fault("PUT", 503) for _ in range(2))
    short_storm = await executor.execute(_decision(1, clock, 2))
    assert isinstance(short_storm, ExecutionResult) and short_storm.status == "applied"
    assert len(api.writes()) == 3

    api.faults.extend(Fault("PUT", 502) for _ in range(9))  # three decisions x three attempts
    for n in range(2, 5):
        failed = await executor.execute(_decision(n, clock, 5))
        assert isinstance(failed, ExecutionResult) and failed.status == "failed"
        assert "HTTP 502" in failed.error
    assert len(api.writes()) == 12
    assert [a.code for a in alerts] == ["BreakerOpen"]
    paused = await executor.execute(_decision(5, clock, 5))
    assert isinstance(paused, ExecutionResult) and paused.reason.startswith("BreakerOpen")
    assert len(api.writes()) == 12

    clock.advance(31.0)
    api.faults.append(Fault("PUT", 403))
    forbidden = await executor.execute(_decision(6, clock, 5))
    assert isinstance(forbidden, ExecutionResult) and forbidden.status == "failed"
    assert "permanent backend error (HTTP 403)" in forbidden.error
    assert len(api.writes()) == 13, "a 403 is not retried"

    # The per-endpoint counters, as the registry's notification endpoints keep them, for the API server.
    metrics, endpoint = executor._metrics, session.host
    reads, writes = 5, 13  # a read per decision reaching the backend (the paused one does not), every write attempt
    assert metrics.endpoint_events.labels(endpoint)._value.get() == reads + writes
    assert metrics.endpoint_successes.labels(endpoint)._value.get() == reads + 1  # and the write of decision 1
    assert metrics.endpoint_failures.labels(endpoint)._value.get() == 2 + 9 + 1
    assert metrics.endpoint_errors.labels(endpoint)._value.get() == 0
    codes = {
        code: metrics.endpoint_status_codes.labels(endpoint, code)._value.get() for code in ("200", "503", "502", "403")
    }
    assert codes == {"200": reads + 1, "503": 2, "502": 9, "403": 1}
    assert metrics.endpoint_pending.labels(endpoint)._value.get() == 0


async def test_a_429_with_retry_after_is_retried_no_sooner_than_the_server_asked(
    api: ApiStandIn, session: KubernetesSession
) -> None:
    api.add("deployments", "web", 1)
    api.faults.append(Fault("PUT", 429, retry_after="2"))
    backend = backend_for(session, name="web")
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    policy = RetryConfig(attempts=3, base_delay_seconds=0.1, max_delay_seconds=5.0)
    result = await call_with_retry(lambda: backend.scale(2), policy, rng=random.Random(1), sleep=sleep)
    assert result.spec_replicas == 2
    assert slept == [2.0]


async def test_the_watch_reports_a_change_by_others_long_before_the_next_poll(api: ApiStandIn, tmp_path: Path) -> None:
    api.add("deployments", "web", 2)
    slow = await open_session(api, tmp_path, poll_interval_seconds=60.0)
    backend = backend_for(slow, name="web")
    await backend.start()
    try:
        for _ in range(100):
            if api.watchers:
                break
            await asyncio.sleep(0.02)
        assert api.watchers, "the backend opened a watch"
        watch_request = next(r for r in api.requests if r[1] == "/apis/apps/v1/namespaces/default/deployments")
        assert watch_request[0] == "GET"
        await asyncio.sleep(0.2)  # let the initial ADDED event and its read settle
        backend.changed.clear()

        api.modify("deployments", "web", 7)
        for _ in range(100):
            if backend.changed.is_set():
                break
            await asyncio.sleep(0.02)
        assert backend.changed.is_set(), "the watch event made the backend re-read (the poller sleeps 60 s)"
        assert (await backend.read()).spec_replicas == 7
    finally:
        await backend.stop()
        await slow.close()
