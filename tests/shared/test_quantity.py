"""Kubernetes quantities parse as the API server reads them."""

from __future__ import annotations

import pytest

from shared.quantity import QuantityError, parse_quantity


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1", 1.0),
        ("500m", 0.5),
        ("250u", 250e-6),
        ("100n", 100e-9),
        ("1.5", 1.5),
        ("2k", 2000.0),
        ("1M", 1e6),
        ("1Ki", 1024.0),
        ("1.5Gi", 1.5 * 2**30),
        ("128Mi", 128 * 2**20),
        ("2e3", 2000.0),
        ("1E-3", 0.001),
        (".5", 0.5),
        (42, 42.0),
        (0.25, 0.25),
    ],
)
def test_quantities_parse_to_their_value(text: str | float, value: float) -> None:
    assert parse_quantity(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["", "abc", "1KB", "1.2.3", "m", "1 Gi", "--1"])
def test_garbage_is_not_a_quantity(text: str) -> None:
    with pytest.raises(QuantityError):
        parse_quantity(text)
