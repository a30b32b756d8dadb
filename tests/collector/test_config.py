"""The collector's configuration: the demo file loads; bad files are rejected with file, field and reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.collector.config import CollectorConfig, ProcessSourceConfig, ScrapeSourceConfig
from shared.config import ConfigError, load_config

REPO = Path(__file__).resolve().parents[2]


def test_the_demo_config_scrapes_web_replicas_discovered_from_status_into_a_per_pod_rate() -> None:
    config = load_config(REPO / "deploy/local/collector.yaml", CollectorConfig)
    [web] = config.targets
    assert web.name == "web"
    scrape = web.sources[0]
    assert isinstance(scrape, ScrapeSourceConfig) and scrape.discover
    rate = next(m for m in scrape.metrics if m.match == "demo_requests_total")
    assert (rate.kind, rate.output_name) == ("rate", "demo_requests_per_second")
    assert config.snapshot_interval_seconds == 1.0


def test_process_requests_accept_numbers_and_kubernetes_quantities() -> None:
    config = ProcessSourceConfig(name="p", cpu_request="250m", memory_request="64Mi")
    assert config.requests == {"cpu_request": 0.25, "memory_request": 64 * 2**20}
    renamed = ProcessSourceConfig(name="p", cpu_name="cores_used", cpu_request=2)
    assert renamed.requests == {"cores_used_request": 2.0}
    assert ProcessSourceConfig(name="p").requests == {}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "collector.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "field", "reason"),
    [
        (
            "targets: [{name: web, sources: [{type: scrape, name: s, metrics: [{match: x}]}]}]",
            "targets[0].sources[0]",
            "needs `discover: true`",
        ),
        ("targets: [{name: web, sources: [{type: ftp, name: s}]}]", "targets[0].sources[0].type", "Invalid value"),
        ("targets: [{name: Web}]", "targets[0].name", "matching regex"),
        ("targets: [{name: web}, {name: web}]", "", "target names must be unique"),
        (
            "targets: [{name: web, sources: [{type: process, name: p, timeout_seconds: 0}]}]",
            "targets[0].sources[0].timeout_seconds",
            "Expected `float` > 0",
        ),
        ("targets: [{name: web, thresholds: [{metric: rps}]}]", "targets[0].thresholds[0]", "needs `above` or `below`"),
        (
            "targets: [{name: web, sources: [{type: process, name: p, cpu_request: 250x}]}]",
            "targets[0].sources[0]",
            "cpu_request: not a quantity: '250x'",
        ),
        (
            "targets: [{name: web, sources: [{type: process, name: p, memory_request: 0}]}]",
            "targets[0].sources[0]",
            "memory_request must be a positive quantity",
        ),
        ("scrape_everything: true", "", "unknown field `scrape_everything`"),
        ("ownership: {heartbeat_seconds: 5, member_ttl_seconds: 2}", "ownership", "longer than heartbeat_seconds"),
    ],
)
def test_invalid_config_is_rejected_naming_the_field_and_reason(
    tmp_path: Path, text: str, field: str, reason: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, CollectorConfig)
    assert caught.value.file == str(path)
    assert caught.value.field == field
    assert reason in caught.value.reason
