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
        ({"labels": ["a", "a", "c"]}, "labels must be unique and not empty"),
        ({"labels": ["a", " ", "c"]}, "labels must be unique and not empty"),
        ({"calibration": "uncalibrated"}, "uncalibrated model has temperature 1.0"),
        ({"scores": "probabilities"}, "outputs probabilities is served uncalibrated"),
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


def test_an_imported_version_may_carry_no_metrics() -> None:
    raw = json.loads(encode_manifest(sample_manifest()))
    raw.update(metrics={}, temperature=1.0, calibration="uncalibrated", scores="probabilities", weights_sha256=None)
    raw["lineage"]["imported"] = {
        "kind": "onnx",
        "source": "model.onnx",
        "sha256": "0" * 64,
        "imported_at": "2026-12-03T00:00:00+00:00",
        "command": "imgcls models import model.onnx --name shoes",
    }
    manifest = decode_manifest(json.dumps(raw).encode())
    assert manifest.metrics == {}
    assert manifest.lineage.imported is not None and manifest.lineage.imported.kind == "onnx"
    assert not manifest.fine_tunable


def test_older_manifests_decode_with_the_old_meaning() -> None:
    raw = json.loads(encode_manifest(sample_manifest()))
    for key in ("scores", "calibration"):
        del raw[key]
    for key in ("layout", "background"):
        del raw["preprocessing"][key]
    del raw["lineage"]["imported"]
    manifest = decode_manifest(json.dumps(raw).encode())
    assert (manifest.scores, manifest.calibration) == ("logits", "temperature")
    assert (manifest.preprocessing.layout, manifest.preprocessing.background) == ("NCHW", None)
    assert manifest.lineage.imported is None


def test_a_background_is_rgb_0_to_255() -> None:
    with pytest.raises(ValueError, match="background values must be 0-255"):
        Preprocessing(color_mode="RGB", input_size=(32, 32), mean=(0.5,) * 3, std=(0.2,) * 3, background=(0, 0, 256))
