"""KEY=VALUE options read as YAML, with numbers in exponent form read as numbers."""

import pytest

from training.cli.options import parse_pairs


@pytest.mark.parametrize(
    ("pair", "value"),
    [
        ("eps=1e-6", 1e-6),  # YAML 1.1 alone would give the string "1e-6"
        ("eps=1.0e-6", 1e-6),
        ("step_sizes=[1e-6, 0.01]", [1e-6, 0.01]),
        ("step_sizes=[0.000001,50]", [1e-6, 50]),
        ("centered=true", True),
        ("line_search=strong_wolfe", "strong_wolfe"),
        ("name=e5", "e5"),  # not a number
    ],
)
def test_values_are_yaml_with_exponents_as_numbers(pair: str, value: object) -> None:
    key = pair.partition("=")[0]
    assert parse_pairs("--optimizer-option", (pair,)) == {key: value}
