"""explain.onnx: onnxruntime's class activation maps against the same maps computed in torch from the model
itself (a hook on its last feature layer and its classifier's weights), within 1e-4."""

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from training.errors import ExportError
from training.explain_export import FEATURES, explainable, export_explain
from training.models import create_model, model_names


def torch_maps(model: nn.Module, last_layer: nn.Module, head: nn.Linear, images: torch.Tensor) -> np.ndarray:
    """W . F with F caught by a forward hook on ``last_layer`` while the whole model runs: (B, classes, h, w)."""
    caught: list[torch.Tensor] = []
    handle = last_layer.register_forward_hook(lambda module, args, output: caught.append(output))
    try:
        with torch.no_grad():
            model(images)
    finally:
        handle.remove()
    (features,) = caught
    return torch.einsum("kc,bchw->bkhw", head.weight.detach(), features).numpy()


@pytest.mark.parametrize(
    ("architecture", "input_shape", "last_layer", "head", "map_size"),
    [
        ("cnn", (1, 28, 28), "features", "head", (3, 3)),
        ("resnet18", (3, 64, 64), "layer4", "fc", (2, 2)),
    ],
)
def test_onnxruntime_maps_match_torch(tmp_path, architecture, input_shape, last_layer, head, map_size):
    torch.manual_seed(0)
    model = create_model(architecture, in_channels=input_shape[0], num_classes=7).eval()
    entry = export_explain(model, tmp_path / "explain.onnx", architecture=architecture, input_shape=input_shape)
    assert (entry.file, entry.sha256, entry.map_size) == ("explain.onnx", "", map_size)
    assert entry.pooling == ("max" if architecture == "cnn" else "average")
    assert entry.max_abs_diff <= 1e-4

    session = ort.InferenceSession(str(tmp_path / "explain.onnx"), providers=["CPUExecutionProvider"])
    images = torch.randn(5, *input_shape, generator=torch.Generator().manual_seed(1))
    logits, maps = session.run(["logits", "cam"], {"input": images.numpy()})
    classifier = model.get_submodule(head)
    want = torch_maps(model, model.get_submodule(last_layer), classifier, images)
    assert maps.shape == (5, 7, *map_size)
    np.testing.assert_allclose(maps, want, atol=1e-4, rtol=0)
    with torch.no_grad():
        np.testing.assert_allclose(logits, model(images).numpy(), atol=1e-4, rtol=0)
    if entry.pooling == "average":  # exact: the map splits the logit (less its bias) among the positions
        bias = classifier.bias.detach().numpy()
        np.testing.assert_allclose(maps.mean(axis=(2, 3)) + bias, logits, atol=1e-4, rtol=0)


@pytest.mark.parametrize("architecture", ["lenet5", "mobilenet_v3_small", "convnext_tiny"])
def test_architectures_without_class_activation_maps_are_refused(tmp_path, architecture):
    assert not explainable(architecture)
    model = create_model(architecture, in_channels=1, num_classes=3)
    with pytest.raises(ExportError, match="global pool and one linear classifier"):
        export_explain(model, tmp_path / "explain.onnx", architecture=architecture, input_shape=(1, 32, 32))
    assert list(tmp_path.iterdir()) == []


def test_every_explainable_name_is_a_registered_model():
    assert set(FEATURES) <= set(model_names())
