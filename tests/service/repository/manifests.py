"""A valid manifest to build test repositories from (no training needed)."""

from service.repository import Lineage, Manifest, Preprocessing, TensorSpec


def sample_manifest(name: str = "fashion-mnist") -> Manifest:
    return Manifest(
        name=name,
        architecture="cnn",
        labels=("a", "b", "c"),
        input=TensorSpec(name="input", datatype="FP32", shape=(-1, 1, 28, 28)),
        output=TensorSpec(name="logits", datatype="FP32", shape=(-1, 3)),
        preprocessing=Preprocessing(color_mode="L", input_size=(28, 28), mean=(0.5,), std=(0.25,)),
        temperature=1.5,
        metrics={"test_accuracy": 0.9, "ece": 0.01, "ece_uncalibrated": 0.05},
        lineage=Lineage(dataset="fashion-mnist", config={"model": "cnn"}),
        onnx_sha256="",
        weights_sha256=None,
        created_at="2026-11-27T00:00:00+00:00",
        code_version="test",
    )
