"""Policy files as data: validation names file, field and reason; hot reload keeps the last good policy."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from services.decider.engine.spec import ControllerSettings
from services.decider.policy.loader import parse_policies
from services.decider.policy.registry import PolicyRegistry
from shared.config import ConfigError

SETTINGS = ControllerSettings()


def policy_text(name: str = "web", max_replicas: int = 8, extra: str = "") -> str:
    return f"""\
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {name}
spec:
  scaleTargetRef: {{kind: Deployment, name: {name}}}
  minReplicas: 1
  maxReplicas: {max_replicas}
  metrics:
    - type: Pods
      pods:
        metric: {{name: demo_requests_per_second}}
        target: {{type: AverageValue, averageValue: "5"}}
{extra}"""


def test_an_unknown_field_is_rejected_naming_file_field_and_reason() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_policies(policy_text(extra="  maxReplica: 3\n"), file="web.yaml", settings=SETTINGS)
    assert (caught.value.file, caught.value.field) == ("web.yaml", "spec")
    assert "unknown field `maxReplica`" in caught.value.reason


def test_a_target_type_that_does_not_fit_the_metric_is_rejected_with_its_path() -> None:
    text = policy_text().replace("type: AverageValue", "type: Utilization")
    with pytest.raises(ConfigError) as caught:
        parse_policies(text, file="web.yaml", settings=SETTINGS)
    assert caught.value.field == "spec.metrics[0].pods.target.type"
    assert "AverageValue" in caught.value.reason


def test_min_above_max_is_rejected() -> None:
    text = policy_text(max_replicas=1).replace("minReplicas: 1", "minReplicas: 3")
    with pytest.raises(ConfigError, match=r"spec.minReplicas: 3 is greater than maxReplicas 1"):
        parse_policies(text, file="web.yaml", settings=SETTINGS)


def test_a_file_may_hold_several_documents_and_errors_name_the_document() -> None:
    two = policy_text("web") + "---\n" + policy_text("api")
    assert [p.target for p in parse_policies(two, file="all.yaml", settings=SETTINGS)] == ["web", "api"]
    broken = policy_text("web") + "---\n" + policy_text("api", extra="  bogus: 1\n")
    with pytest.raises(ConfigError) as caught:
        parse_policies(broken, file="all.yaml", settings=SETTINGS)
    assert caught.value.file == "all.yaml (document 2)"


def test_invalid_yaml_names_the_line() -> None:
    with pytest.raises(ConfigError, match="invalid YAML: line 2"):
        parse_policies("a: 1\n  b: [\n", file="bad.yaml", settings=SETTINGS)


def test_a_broken_reload_keeps_the_last_good_policy_and_reports_why(tmp_path: Path) -> None:
    (tmp_path / "web.yaml").write_text(policy_text(max_replicas=8))
    registry = PolicyRegistry(tmp_path, SETTINGS)
    registry.load_strict()
    assert registry.policies["web"].max_replicas == 8

    (tmp_path / "web.yaml").write_text(policy_text(max_replicas=8, extra="  surprise: true\n"))
    report = registry.reload()
    assert not report.changed
    (error,) = report.errors
    assert error.file.endswith("web.yaml") and "surprise" in error.reason
    assert registry.policies["web"].max_replicas == 8
    assert "web.yaml" in registry.file_errors()

    assert registry.reload().errors == (), "an unchanged broken file is reported once"

    (tmp_path / "web.yaml").write_text(policy_text(max_replicas=12))
    report = registry.reload()
    assert report.changed and report.errors == ()
    assert registry.policies["web"].max_replicas == 12
    assert registry.file_errors() == {}


def test_adding_and_removing_files_adds_and_removes_targets(tmp_path: Path) -> None:
    (tmp_path / "web.yaml").write_text(policy_text("web"))
    registry = PolicyRegistry(tmp_path, SETTINGS)
    registry.load_strict()
    (tmp_path / "api.yml").write_text(policy_text("api"))
    assert registry.reload().loaded == ("api.yml",)
    assert set(registry.policies) == {"web", "api"}
    (tmp_path / "web.yaml").unlink()
    report = registry.reload()
    assert report.removed == ("web.yaml",)
    assert set(registry.policies) == {"api"}


def test_two_files_for_one_target_keep_the_first_and_report_the_second(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(policy_text("web", max_replicas=3))
    (tmp_path / "b.yaml").write_text(policy_text("web", max_replicas=9))
    registry = PolicyRegistry(tmp_path, SETTINGS)
    with pytest.raises(ConfigError, match="already has a policy"):
        registry.load_strict()
    assert registry.policies["web"].max_replicas == 3


def test_a_configmap_style_symlink_swap_is_seen(tmp_path: Path) -> None:
    """Kubernetes mounts a ConfigMap as ``web.yaml -> ..data/web.yaml`` and swaps ``..data`` atomically."""
    first = tmp_path / "..2024_01_01_v1"
    first.mkdir()
    (first / "web.yaml").write_text(policy_text(max_replicas=4))
    (tmp_path / "..data").symlink_to(first.name)
    (tmp_path / "web.yaml").symlink_to("..data/web.yaml")
    registry = PolicyRegistry(tmp_path, SETTINGS)
    registry.load_strict()
    assert set(registry.policies) == {"web"}, "the hidden ..data entries are not read as policies"
    assert registry.policies["web"].max_replicas == 4

    second = tmp_path / "..2024_01_02_v2"
    second.mkdir()
    (second / "web.yaml").write_text(policy_text(max_replicas=6))
    (tmp_path / "..data_tmp").symlink_to(second.name)
    os.replace(tmp_path / "..data_tmp", tmp_path / "..data")
    assert registry.reload().changed
    assert registry.policies["web"].max_replicas == 6


def test_the_demo_policy_and_the_example_policies_are_valid() -> None:
    repo = Path(__file__).resolve().parents[2]
    files = [repo / "deploy/local/policies/web.yaml", *sorted((repo / "docs/examples").glob("*.yaml"))]
    for file in files:
        assert parse_policies(file.read_text(), file=str(file), settings=SETTINGS)
