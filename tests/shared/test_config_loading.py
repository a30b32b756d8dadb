"""Config files are data: a bad file is rejected with its file, field and reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.config import BusConfig, Config, ConfigError, ServiceConfig, load_config


class ExampleConfig(Config, frozen=True, kw_only=True):
    service: ServiceConfig = ServiceConfig()
    replicas: int = 1


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "example.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_valid_file_loads_with_defaults_for_what_it_leaves_out(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "replicas: 3\nservice:\n  bus:\n    url: nats://127.0.0.1:5\n"), ExampleConfig)
    assert config.replicas == 3
    assert config.service.bus.url == "nats://127.0.0.1:5"
    assert config.service.http == ServiceConfig().http


def test_an_empty_file_means_all_defaults(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, ""), ExampleConfig) == ExampleConfig()


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        load_config(tmp_path / "nope.yaml", ExampleConfig)
    assert error.value.file.endswith("nope.yaml")
    assert "not found" in error.value.reason


def test_an_unknown_field_is_rejected_with_its_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        load_config(write(tmp_path, "service:\n  bus:\n    ulr: nats://x\n"), ExampleConfig)
    assert error.value.field == "service.bus"
    assert "ulr" in error.value.reason


def test_a_wrong_type_names_the_field_and_what_was_expected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        load_config(write(tmp_path, "replicas: many\n"), ExampleConfig)
    assert error.value.field == "replicas"
    assert "int" in error.value.reason
    assert str(error.value).startswith(str(tmp_path / "example.yaml"))


def test_a_value_out_of_range_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        load_config(write(tmp_path, "service:\n  http:\n    port: 70000\n"), ExampleConfig)
    assert error.value.field == "service.http.port"


def test_broken_yaml_is_reported_with_its_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        load_config(write(tmp_path, "replicas: 1\nservice: [unclosed\n"), ExampleConfig)
    assert "invalid YAML" in error.value.reason
    assert "line" in error.value.reason


def test_a_top_level_list_is_not_a_config(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        load_config(write(tmp_path, "- a\n- b\n"), ExampleConfig)
    assert "mapping" in error.value.reason


def test_bus_subject_prefix_must_be_a_valid_subject(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        load_config(write(tmp_path, "subject_prefix: 'bad prefix'\n"), BusConfig)
    assert error.value.field == "subject_prefix"
