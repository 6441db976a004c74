import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from training.errors import ExportError
from training.export import export_onnx
from training.models import create_model, model_names

INPUT_SHAPE = (1, 28, 28)


@pytest.mark.parametrize("name", model_names())
def test_every_model_exports_with_parity(tmp_path, name):
    torch.manual_seed(0)
    size = 32 if name == "convnext_tiny" else 28  # convnext_tiny's unpadded stages need at least 32 px
    input_shape = (1, size, size)
    model = create_model(name, in_channels=1, num_classes=10)
    report = export_onnx(model, tmp_path / f"{name}.onnx", input_shape=input_shape)
    assert report.path.is_file()
    assert report.argmax_equal and report.max_abs_diff <= 1e-3
    assert report.opset == 18
    assert (report.input_name, report.output_name) == ("input", "logits")
    assert report.input_shape == (-1, 1, size, size) and report.output_shape == (-1, 10)
    assert report.batch_sizes == (1, 3)
    assert model.training  # create_model leaves train mode; exporting restores it
    model.eval()
    assert list(tmp_path.iterdir()) == [report.path]  # no temporary, no external data file

    # The batch axis really is dynamic in onnxruntime.
    session = ort.InferenceSession(str(report.path), providers=["CPUExecutionProvider"])
    for batch in (1, 5):
        images = torch.randn(batch, *input_shape)
        (logits,) = session.run(None, {"input": images.numpy()})
        assert logits.shape == (batch, 10)
        with torch.no_grad():
            np.testing.assert_allclose(logits, model(images).numpy(), atol=1e-4, rtol=1e-3)


def test_sample_metadata_and_modes(tmp_path):
    torch.manual_seed(0)
    model = create_model("lenet5", in_channels=1, num_classes=10)
    model.train()
    model.classifier.eval()  # a mixed mode must come back exactly as it was
    sample = torch.randn(5, *INPUT_SHAPE)
    report = export_onnx(
        model, tmp_path / "sub" / "m.onnx", input_shape=INPUT_SHAPE, sample=sample, metadata={"labels": "a,b"}
    )
    assert report.batch_sizes == (1, 3, 5)
    assert model.training and model.features.training and not model.classifier.training
    props = {entry.key: entry.value for entry in onnx.load(str(report.path)).metadata_props}
    assert props["labels"] == "a,b"


def test_failed_parity_raises_and_leaves_nothing(tmp_path):
    model = create_model("lenet5", in_channels=1, num_classes=10)
    target = tmp_path / "model.onnx"
    target.write_bytes(b"previous version")
    with pytest.raises(ExportError, match=r"disagree on a batch of 1: max abs diff \S+ \(atol 0, rtol 0\)"):
        export_onnx(model, target, input_shape=INPUT_SHAPE, atol=0.0, rtol=0.0)
    assert target.read_bytes() == b"previous version"  # untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]  # no temporary left


def test_bad_arguments(tmp_path):
    model = create_model("lenet5", in_channels=1, num_classes=10)
    with pytest.raises(ValueError, match="input_shape"):
        export_onnx(model, tmp_path / "m.onnx", input_shape=(28, 28))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="sample"):
        export_onnx(model, tmp_path / "m.onnx", input_shape=INPUT_SHAPE, sample=torch.randn(2, 3, 28, 28))
    assert list(tmp_path.iterdir()) == []


def test_untraceable_model_is_an_export_error(tmp_path):
    class DataDependent(nn.Module):
        def forward(self, images: torch.Tensor) -> torch.Tensor:
            if images.sum() > 0:  # control flow on values: torch.export cannot trace it
                return images.flatten(1)[:, :10]
            return -images.flatten(1)[:, :10]

    with pytest.raises(ExportError, match=r"torch\.onnx\.export failed for DataDependent"):
        export_onnx(DataDependent(), tmp_path / "m.onnx", input_shape=INPUT_SHAPE)
    assert list(tmp_path.iterdir()) == []
