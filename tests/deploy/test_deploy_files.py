"""deploy/ is what takes scalebus to a machine or a cluster: every file in it must load as the services will load it.

No Kubernetes control plane runs here, so the manifests are checked for what can be checked offline:
they parse, they reference what exists, and the configs and policies they ship pass the services' own validation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from scalebus.run import DemoConfig
from services.actuator.config import ActuatorConfig
from services.collector.config import CollectorConfig
from services.decider.config import DeciderConfig
from services.decider.engine.spec import ControllerSettings
from services.decider.policy.loader import load_policy_file, policy_files
from shared.config import load_config

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
CONFIG_TYPES: dict[str, type[Any]] = {
    "collector": CollectorConfig,
    "decider": DeciderConfig,
    "actuator": ActuatorConfig,
}


def manifests() -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    documents = []
    for resource in kustomization["resources"]:
        for document in yaml.safe_load_all((KUBERNETES / resource).read_text()):
            if document:
                documents.append(document)
    return documents


@pytest.mark.parametrize("service", sorted(CONFIG_TYPES))
@pytest.mark.parametrize("where", ["local", "kubernetes/configs"])
def test_every_shipped_service_config_passes_the_services_validation(service: str, where: str) -> None:
    load_config(DEPLOY / where / f"{service}.yaml", CONFIG_TYPES[service])


@pytest.mark.parametrize("directory", [DEPLOY / "local" / "policies", KUBERNETES / "policies"])
def test_every_shipped_policy_loads(directory: Path) -> None:
    files = policy_files(directory)
    assert files, f"no policy in {directory}"
    for file in files:
        assert load_policy_file(file, ControllerSettings()), file


def test_the_demo_config_loads_and_names_configs_that_exist() -> None:
    demo = load_config(DEPLOY / "local" / "demo.yaml", DemoConfig)
    for service in CONFIG_TYPES:
        assert (DEPLOY / "local" / getattr(demo, service)).exists()
    assert demo.load.cycles * demo.load.cycle_seconds < 3600, "the demo load must stop by itself"


def test_every_kubernetes_manifest_names_its_kind_and_the_kustomization_files_exist() -> None:
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    for generator in kustomization["configMapGenerator"]:
        for file in generator["files"]:
            assert (KUBERNETES / file).exists(), file
    for document in manifests():
        assert document.get("apiVersion") and document.get("kind"), document
        assert document["metadata"].get("name"), document


def test_each_service_deployment_runs_its_config_and_probes_the_port_its_config_serves() -> None:
    deployments = {d["metadata"]["name"]: d for d in manifests() if d["kind"] == "Deployment"}
    for service, config_type in CONFIG_TYPES.items():
        deployment = deployments[f"scalebus-{service}"]
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert container["command"] == [f"scalebus-{service}", "--config", f"/etc/scalebus/config/{service}.yaml"]
        config = load_config(KUBERNETES / "configs" / f"{service}.yaml", config_type)
        assert config.service.http.host == "0.0.0.0"
        assert container["ports"][0]["containerPort"] == config.service.http.port
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
        assert pod["terminationGracePeriodSeconds"] > config.service.shutdown_deadline_seconds
        assert (
            deployment["spec"]["selector"]["matchLabels"].items()
            <= deployment["spec"]["template"]["metadata"]["labels"].items()
        )


def test_the_actuator_may_scale_and_the_collector_may_read_pod_metrics() -> None:
    roles = {d["metadata"]["name"]: d for d in manifests() if d["kind"] == "ClusterRole"}
    actuator_rules = roles["scalebus-actuator"]["rules"]
    assert any("deployments/scale" in r["resources"] and "patch" in r["verbs"] for r in actuator_rules)
    assert any("*/scale" in r["resources"] and "patch" in r["verbs"] for r in actuator_rules)
    collector_rules = roles["scalebus-collector"]["rules"]
    assert any("metrics.k8s.io" in r["apiGroups"] and "list" in r["verbs"] for r in collector_rules)


def test_the_decider_reads_policies_where_the_policy_configmap_is_mounted() -> None:
    (deployment,) = [d for d in manifests() if d["metadata"]["name"] == "scalebus-decider"]
    pod = deployment["spec"]["template"]["spec"]
    mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    volumes = {v["name"]: v["configMap"]["name"] for v in pod["volumes"]}
    config = load_config(KUBERNETES / "configs" / "decider.yaml", DeciderConfig)
    (policies,) = [name for name, configmap in volumes.items() if configmap == "scalebus-policies"]
    assert mounts[policies] == config.policies_dir
    assert deployment["spec"]["strategy"]["type"] == "Recreate", "one decider at a time"
