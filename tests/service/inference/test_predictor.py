"""The data plane of a loaded version: onnxruntime, then what the manifest says: the temperature, the layout, a
fixed batch of 1, probabilities already in the graph."""

from pathlib import Path

import msgspec
import numpy as np
import onnxruntime as ort
import pytest

from service.importing.options import ImportOptions
from service.importing.publish import import_onnx
from service.inference.errors import VariantNotFound
from service.inference.predictor import Predictor, model_file
from service.inference.providers import CPU
from service.repository import Manifest, ModelRepository
from tests.service.importing.onnx_models import LABELS, OnnxFiles

MODEL = "fashion-mnist"


def images(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((count, 1, 28, 28)).astype(np.float32)


def at_temperature(path: Path, manifest: Manifest, temperature: float) -> Predictor:
    tempered = msgspec.structs.replace(manifest, temperature=temperature)
    return Predictor.for_manifest(path, tempered, providers=[CPU], intra_op_threads=1)


def softmax(logits: np.ndarray, temperature: float) -> np.ndarray:
    scaled = logits.astype(np.float64) / temperature
    exp = np.exp(scaled - scaled.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("temperature", [1.0, 0.5, 2.5])
def test_predict_is_the_softmax_of_the_logits_over_the_temperature(
    repository: ModelRepository, temperature: float
) -> None:
    manifest = repository.manifest(MODEL, 1)
    path = model_file(repository.path(MODEL, 1), manifest, "fp32")
    predictor = at_temperature(path, manifest, temperature)
    batch = images(5)
    logits = ort.InferenceSession(str(path), providers=[CPU]).run(None, {manifest.input.name: batch})[0]
    probabilities = predictor.predict(batch)
    assert probabilities.dtype == np.float32 and probabilities.shape == (5, len(manifest.labels))
    np.testing.assert_allclose(probabilities, softmax(logits, temperature), rtol=1e-5, atol=1e-7)


def test_a_higher_temperature_flattens_the_probabilities_and_keeps_the_ranking(repository: ModelRepository) -> None:
    manifest = repository.manifest(MODEL, 1)
    path = model_file(repository.path(MODEL, 1), manifest, "fp32")
    sharp = at_temperature(path, manifest, 1.0).predict(images(8))
    flat = at_temperature(path, manifest, 4.0).predict(images(8))
    assert (flat.max(axis=1) < sharp.max(axis=1)).all()
    np.testing.assert_array_equal(flat.argmax(axis=1), sharp.argmax(axis=1))


def test_an_unknown_variant_names_the_known_ones(repository: ModelRepository) -> None:
    manifest = repository.manifest(MODEL, 1)
    with pytest.raises(VariantNotFound, match=r"no variant 'int4'.*known: fp32"):
        model_file(repository.path(MODEL, 1), manifest, "int4")


def test_an_nhwc_model_gets_its_batch_transposed_and_its_probabilities_as_they_are(
    tmp_path: Path, onnx_files: OnnxFiles
) -> None:
    repository = ModelRepository(tmp_path)
    model = onnx_files.nhwc_softmax
    import_onnx(repository, model, name="k", labels=LABELS, options=ImportOptions(), source="k", command="t")
    manifest = repository.manifest("k", 1)
    predictor = Predictor.for_manifest(
        model_file(tmp_path / "k" / "1", manifest, "fp32"), manifest, providers=[CPU], intra_op_threads=1
    )
    batch = np.random.default_rng(0).standard_normal((4, 3, 32, 32)).astype(np.float32)  # (N, C, H, W)
    session = ort.InferenceSession(str(model), providers=[CPU])
    expected = session.run(None, {"pixels": batch.transpose(0, 2, 3, 1).copy()})[0]
    np.testing.assert_array_equal(predictor.predict(batch), expected)  # no second softmax


def test_a_fixed_batch_of_one_is_run_image_by_image(tmp_path: Path, onnx_files: OnnxFiles) -> None:
    repository = ModelRepository(tmp_path)
    model = onnx_files.fixed_batch
    import_onnx(repository, model, name="f", labels=LABELS, options=ImportOptions(), source="f", command="t")
    manifest = repository.manifest("f", 1)
    predictor = Predictor.for_manifest(
        model_file(tmp_path / "f" / "1", manifest, "fp32"), manifest, providers=[CPU], intra_op_threads=1
    )
    batch = np.random.default_rng(1).standard_normal((5, 3, 32, 32)).astype(np.float32)
    session = ort.InferenceSession(str(model), providers=[CPU])
    logits = np.concatenate([session.run(None, {"pixels": batch[i : i + 1]})[0] for i in range(5)])
    np.testing.assert_allclose(predictor.predict(batch), softmax(logits, 1.0), rtol=1e-5, atol=1e-7)
    predictor.warm_up((1, 8))  # the warm-up batches run image by image too
