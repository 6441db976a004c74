"""``explain.onnx``: the graph that answers *where* in the image a classifier found its answer.

A class activation map (CAM; Zhou et al., 2016) scores every position of the last convolutional feature
map ``F`` (C channels, h x w) with the classifier's own weights ``W`` (classes x C)::

    cam[k, y, x] = sum_c W[k, c] * F[c, y, x]

It needs a network whose classifier is one linear layer on a global pool of ``F`` (``FEATURES`` names
the layers that make ``F`` for each such architecture in training's registry):

- average pool (``resnet_small``, ``resnet18/34/50``, ``efficientnet_b0``): exact, since
  ``logit[k] = bias[k] + mean over (y, x) of cam[k]``: the map splits the logit among the positions;
- max pool (``cnn``, ``cnn_wide``): the map of Oquab et al. (2015), each position scored as if its
  features were the pooled ones; the logit is ``bias + W . (max of each channel)``, so the map shows where
  the evidence is without summing to the logit.

Other architectures get no explain graph (``explainable`` is False): ``lenet5`` ends in a 1x1 map and
hidden layers, ``mobilenet_v3_*`` put a hidden layer (Linear, Hardswish) between the pool and the
classifier, ``convnext_tiny`` a LayerNorm; a map made from their last linear layer would be a wrong picture.

The graph is a separate file so that classify traffic pays nothing for it (docs/explanations.md has the
measurement against a second output of ``model.onnx``). Its input is ``model.onnx``'s; its outputs are
``logits`` (batch, classes), the same numbers as ``model.onnx``, and ``cam`` (batch, classes, h, w): the
map of every class, computed in the graph, so the service (no torch) only picks, upsamples and draws.

Like every export it checks itself before it lands: the onnx checker, the names and shapes, torch's
explain module against the model itself (the split reproduces its logits), and onnxruntime against torch
on both outputs (``|ort - torch| <= atol + rtol * |torch|``).
"""

from pathlib import Path
from typing import Literal

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from service.files import replacing
from service.repository.manifest import CAM_OUTPUT, Explanation
from service.repository.store import EXPLAIN_FILE
from training.errors import ExportError
from training.export import EXAMPLE_BATCH_SIZE, INPUT_NAME, OUTPUT_NAME, SEED, on_cpu_in_float32, parity_inputs, to_onnx
from training.models.registry import head_of

Pooling = Literal["average", "max"]

_RESNET_FEATURES = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")
# architecture -> (the modules, in order, that make the last feature map from the image; the global pool after it)
FEATURES: dict[str, tuple[tuple[str, ...], Pooling]] = {
    "cnn": (("features",), "max"),
    "cnn_wide": (("features",), "max"),
    "resnet_small": (("stem", "stages"), "average"),
    "resnet18": (_RESNET_FEATURES, "average"),
    "resnet34": (_RESNET_FEATURES, "average"),
    "resnet50": (_RESNET_FEATURES, "average"),
    "efficientnet_b0": (("features",), "average"),
}


def explainable(architecture: str) -> bool:
    """Whether ``architecture`` is a global pool and one linear classifier, so its maps are class activation maps."""
    return architecture in FEATURES


class ExplainGraph(nn.Module):
    """The classifier split at its last feature map: images -> (logits, class activation maps of every class).

    Shares the model's modules (no copy): built for the export, in eval mode."""

    def __init__(self, model: nn.Module, architecture: str) -> None:
        super().__init__()
        names, self.pooling = FEATURES[architecture]
        self.features = nn.Sequential(*(model.get_submodule(name) for name in names))
        head = model.get_submodule(head_of(architecture))
        if not isinstance(head, nn.Linear):
            raise ExportError(f"{architecture}: the classifier {head_of(architecture)} is not one Linear layer")
        self.head = head

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        maps = self.features(images)  # (B, C, h, w)
        pooled = maps.mean(dim=(2, 3)) if self.pooling == "average" else maps.amax(dim=(2, 3))  # (B, C)
        logits = self.head(pooled)  # (B, classes)
        cam = torch.einsum("kc,bchw->bkhw", self.head.weight, maps)  # (B, classes, h, w), without the bias
        return logits, cam


def export_explain(
    model: nn.Module,
    path: Path,
    *,
    architecture: str,
    input_shape: tuple[int, int, int],
    sample: torch.Tensor | None = None,
    opset: int = 18,
    atol: float = 1e-4,
    rtol: float = 1e-3,
) -> Explanation:
    """Write ``model``'s explain graph to ``path`` (checked, renamed into place only when every check passed) and
    return the manifest's entry for it (``sha256`` is stamped when the version is published).

    ``sample``: a normalized batch of real inputs for the parity checks, as ``export_onnx`` takes. Raises
    ``ExportError`` for an architecture that is not ``explainable`` and for any failed check. The caller's
    model is left in the mode it was in."""
    if not explainable(architecture):
        raise ExportError(
            f"{architecture} has no class activation maps: they need a global pool and one linear classifier "
            f"({', '.join(FEATURES)})"
        )
    path = Path(path)
    generator = torch.Generator().manual_seed(SEED)
    inputs = parity_inputs(sample, input_shape, generator)
    example = torch.randn((EXAMPLE_BATCH_SIZE, *input_shape), generator=generator)
    export_model = on_cpu_in_float32(model)
    modes = {module: module.training for module in export_model.modules()}
    export_model.eval()
    try:
        graph = ExplainGraph(export_model, architecture).eval()
        with replacing(path) as temporary:
            proto = to_onnx(graph, example, opset, output_names=(OUTPUT_NAME, CAM_OUTPUT))
            onnx.save_model(proto, temporary, save_as_external_data=False)
            try:
                onnx.checker.check_model(temporary, full_check=True)
            except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
                raise ExportError(f"{path.name}: the ONNX checker rejects the export: {exc}") from exc
            map_size = _check_signature(proto, path)
            max_abs_diff = _check_parity(export_model, graph, temporary, inputs, atol=atol, rtol=rtol, name=path.name)
    finally:
        for module, training in modes.items():
            module.training = training
    return Explanation(
        file=EXPLAIN_FILE,
        sha256="",
        pooling=FEATURES[architecture][1],
        map_size=map_size,
        max_abs_diff=max_abs_diff,
    )


def _check_signature(proto: onnx.ModelProto, path: Path) -> tuple[int, int]:
    """Outputs ``logits`` (batch, classes) and ``cam`` (batch, classes, h, w); returns (h, w)."""

    def dims(value: onnx.ValueInfoProto) -> list[int | str]:
        return [dim.dim_param or dim.dim_value for dim in value.type.tensor_type.shape.dim]

    outputs = {value.name: dims(value) for value in proto.graph.output}
    inputs = [value.name for value in proto.graph.input]
    logits, cam = outputs.get(OUTPUT_NAME), outputs.get(CAM_OUTPUT)
    if (
        inputs != [INPUT_NAME]
        or logits is None
        or cam is None
        or len(outputs) != 2
        or len(cam) != 4
        or cam[1] != logits[1]
        or not all(isinstance(size, int) and size > 0 for size in cam[1:])
    ):
        raise ExportError(
            f"{path.name}: expected input {INPUT_NAME!r} and outputs {OUTPUT_NAME!r} (batch, classes) and "
            f"{CAM_OUTPUT!r} (batch, classes, h, w), got {inputs} -> {outputs}"
        )
    return int(cam[2]), int(cam[3])


def _check_parity(
    model: nn.Module,
    graph: ExplainGraph,
    onnx_path: Path,
    inputs: list[torch.Tensor],
    *,
    atol: float,
    rtol: float,
    name: str,
) -> float:
    """The split gives the model's logits (torch), and onnxruntime gives torch's logits and maps; returns the
    largest absolute difference between onnxruntime and torch."""
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    max_abs_diff = 0.0
    for batch in inputs:
        with torch.no_grad():
            logits, cam = graph(batch)
            whole = model(batch)
        if not torch.allclose(logits, whole, atol=atol, rtol=rtol):
            raise ExportError(
                f"{name}: the explain graph's logits differ from the model's (max abs diff "
                f"{float((logits - whole).abs().max()):.3g}): the architecture is not split where FEATURES says"
            )
        got = session.run([OUTPUT_NAME, CAM_OUTPUT], {INPUT_NAME: batch.numpy()})
        for output, want in zip(got, (logits.numpy(), cam.numpy()), strict=True):
            if output.shape != want.shape:
                raise ExportError(f"{name}: onnxruntime gave shape {output.shape}, torch {want.shape}")
            diff = float(np.max(np.abs(output - want))) if output.size else 0.0
            max_abs_diff = max(max_abs_diff, diff)
            if not bool(np.all(np.abs(output - want) <= atol + rtol * np.abs(want))):  # False for NaN
                raise ExportError(
                    f"{name}: onnxruntime and torch disagree on a batch of {len(batch)}: max abs diff {diff:.3g} "
                    f"(atol {atol:g}, rtol {rtol:g})"
                )
    return max_abs_diff
