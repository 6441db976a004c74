import json

import msgspec
import pytest

from service.repository import Preprocessing
from service.repository.manifest import decode_manifest, encode_manifest
from tests.service.repository.manifests import sample_manifest


def test_manifest_round_trips_through_json() -> None:
    manifest = sample_manifest()
    assert decode_manifest(encode_manifest(manifest)) == manifest


def test_a_missing_field_is_named() -> None:
    raw = json.loads(encode_manifest(sample_manifest()))
    del raw["temperature"]
    with pytest.raises(msgspec.ValidationError, match="temperature"):
        decode_manifest(json.dumps(raw).encode())


def test_an_unknown_field_is_refused() -> None:
    raw = json.loads(encode_manifest(sample_manifest()))
    raw["preprocessing"]["gamma"] = 2.2
    with pytest.raises(msgspec.ValidationError, match="gamma"):
        decode_manifest(json.dumps(raw).encode())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"temperature": 0.0}, "temperature must be positive"),
        ({"labels": ["only"]}, "at least two labels"),
        ({"metrics": {"test_accuracy": 0.9}}, "metrics lack ece, ece_uncalibrated"),
    ],
)
def test_invalid_values_are_refused(change: dict[str, object], message: str) -> None:
    raw = json.loads(encode_manifest(sample_manifest()))
    raw.update(change)
    with pytest.raises(msgspec.ValidationError, match=message):
        decode_manifest(json.dumps(raw).encode())


def test_preprocessing_needs_one_mean_and_std_per_channel() -> None:
    with pytest.raises(ValueError, match="needs 3 mean/std values"):
        Preprocessing(color_mode="RGB", input_size=(32, 32), mean=(0.5,), std=(0.2,))
    with pytest.raises(ValueError, match="std value must be positive"):
        Preprocessing(color_mode="L", input_size=(32, 32), mean=(0.5,), std=(0.0,))
