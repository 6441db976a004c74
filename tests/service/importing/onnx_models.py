"""ONNX classifiers made by the tests, as users bring them: a torchvision model exported by torch, an NHWC
model ending in a softmax (as Keras exports), one with a fixed batch of 1, and broken ones built node by
node with onnx.helper. Exported with torch's TorchScript exporter (dynamo=False): a few times faster here."""

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

LABELS = ("cat", "dog", "fish")
SIZE = 32  # input side of the small models


@dataclass(frozen=True)
class OnnxFiles:
    torchvision: Path  # mobilenet_v3_small, NCHW logits, dynamic batch, 64 px
    nhwc_softmax: Path  # (N, 32, 32, 3) in, probabilities out
    fixed_batch: Path  # NCHW logits, batch fixed at 1, 32 px


def make_onnx_files(folder: Path) -> OnnxFiles:
    return OnnxFiles(
        torchvision=torchvision_model(folder / "mobilenet.onnx"),
        nhwc_softmax=nhwc_softmax_model(folder / "keras_like.onnx"),
        fixed_batch=fixed_batch_model(folder / "fixed.onnx"),
    )


def _export(model: object, example: object, path: Path, *, dynamic_batch: bool) -> Path:
    torch = pytest.importorskip("torch")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (example,),
            str(path),
            dynamo=False,
            input_names=["pixels"],
            output_names=["scores"],
            dynamic_axes={"pixels": {0: "batch"}, "scores": {0: "batch"}} if dynamic_batch else None,
            external_data=False,
        )
    return path


def torchvision_model(path: Path, *, size: int = 64) -> Path:
    """mobilenet_v3_small with three classes, random weights, NCHW logits, dynamic batch."""
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = torchvision.models.mobilenet_v3_small(num_classes=len(LABELS)).eval()
    return _export(model, torch.randn(2, 3, size, size), path, dynamic_batch=True)


def nhwc_softmax_model(path: Path, *, size: int = SIZE) -> Path:
    """(N, H, W, 3) in, softmax probabilities out: the shape of a Keras export."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(1)

    class ChannelsLast(torch.nn.Module):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
            self.head = torch.nn.Linear(8, len(LABELS))

        def forward(self, x: "torch.Tensor") -> "torch.Tensor":
            features = torch.relu(self.conv(x.permute(0, 3, 1, 2))).mean(dim=(2, 3))
            return torch.softmax(self.head(features) * 4, dim=1)

    return _export(ChannelsLast().eval(), torch.randn(2, size, size, 3), path, dynamic_batch=True)


def fixed_batch_model(path: Path, *, size: int = SIZE) -> Path:
    """NCHW logits with a batch axis fixed at 1: the service must run it image by image."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(2)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.LazyLinear(len(LABELS))
    )
    example = torch.randn(1, 3, size, size)
    model(example)  # materialises the lazy layer
    return _export(model.eval(), example, path, dynamic_batch=False)


# ---------------------------------------------------------------- built node by node


def _weights(shape: tuple[int, ...], name: str, seed: int = 0) -> TensorProto:
    return numpy_helper.from_array(np.random.default_rng(seed).standard_normal(shape).astype(np.float32), name)


def graph_model(
    path: Path,
    *,
    input_shape: list[int | str] | None = None,
    extra_input: bool = False,
    classes: int = len(LABELS),
    head_op: tuple[str, str] = ("", "MatMul"),
    reshape_to: int | None = None,
    opset: int = 17,
) -> Path:
    """``x`` (N, 3, 8, 8) -> global average pool -> flatten -> MatMul (3, classes) -> (N, classes).

    The keywords break it in one way each: another input shape, a second input, an operator from another
    domain or of an unknown name in place of the MatMul, a Reshape to ``(-1, reshape_to)`` that fails at run
    time unless it divides 3 (a graph no checker can fault).
    """
    shape = input_shape or ["N", 3, 8, 8]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)]
    if extra_input:
        inputs.append(helper.make_tensor_value_info("mask", TensorProto.FLOAT, ["N", 1]))
    domain, op = head_op
    nodes = [
        helper.make_node("GlobalAveragePool", ["x"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
    ]
    channels = shape[1] if isinstance(shape[1], int) else 3
    initializers = [_weights((channels, classes), "w")]
    features = "flat"
    if reshape_to is not None:
        initializers.append(numpy_helper.from_array(np.array([-1, reshape_to], dtype=np.int64), "target"))
        nodes.append(helper.make_node("Reshape", ["flat", "target"], ["reshaped"]))
        initializers[0] = _weights((reshape_to, classes), "w")
        features = "reshaped"
    nodes.append(helper.make_node(op, [features, "w"], ["y"], domain=domain))
    output = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", classes])
    graph = helper.make_graph(nodes, "classifier", inputs, [output], initializer=initializers)
    imports = [helper.make_opsetid("", opset)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    model = helper.make_model(graph, opset_imports=imports, ir_version=8)
    onnx.save_model(model, path)
    return path


def external_data_model(path: Path, location: str) -> Path:
    """The node-by-node classifier with its weights stored outside the file, at ``location``."""
    model = onnx.load_model(graph_model(path))
    [weights] = model.graph.initializer
    weights.data_location = TensorProto.EXTERNAL
    weights.ClearField("raw_data")
    weights.ClearField("float_data")
    for key, value in (("location", location), ("offset", "0"), ("length", str(3 * 3 * 4))):
        weights.external_data.add(key=key, value=value)
    onnx.save_model(model, path)
    return path


def save_external_weights(path: Path, location: str) -> None:
    """Write the weights ``external_data_model`` refers to, at ``path.parent / location``."""
    data = np.random.default_rng(0).standard_normal((3, 3)).astype(np.float32).tobytes()
    (path.parent / location).write_bytes(data)


def graph_model_bytes(*, opset: int) -> bytes:
    """The node-by-node classifier, serialized, at ``opset``."""
    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["x"], ["y"])],
        "probe",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3, 1, 1])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8).SerializeToString()
