"""Export a classifier to one self-contained ONNX file, and prove the file computes what torch computes.

``export_onnx`` uses torch's default exporter in torch 2.14, the ``torch.export``-based one
(``dynamo=True``, which needs onnxscript); the TorchScript exporter is deprecated. The graph has one
input ``"input"`` (float32, ``(batch, C, H, W)``) and one output ``"logits"`` (``(batch, classes)``); the
batch axis is dynamic, every other axis fixed. Weights are stored inside the file (no external data), so
the file alone is the model; that limits a model to ONNX's 2 GB protobuf cap, far above ours.

Every export checks itself before it lands at ``path``: ``onnx.checker.check_model(full_check=True)``,
the graph's names and shapes, and onnxruntime (CPU) against torch on batches of 1 and 3 (and the whole
``sample`` if it is bigger) with ``numpy.testing.assert_allclose`` semantics, ``|ort - torch| <= atol +
rtol * |torch|``, plus identical argmax per row. The file is written under a temporary name next to
``path`` and renamed into place only after all checks pass, so a failed export leaves nothing behind
(and an existing file at ``path`` untouched).
"""

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from service.files import replacing
from training.errors import ExportError

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
BATCH_AXIS_NAME = "batch"
PARITY_BATCH_SIZES = (1, 3)  # at least these are compared; the first row(s) of `sample` fill them
EXAMPLE_BATCH_SIZE = 2  # torch.export specialises sizes 0 and 1, so trace with 2 to keep the axis dynamic
SEED = 0  # for the example and the random parity input when no sample is given


@dataclass(frozen=True)
class ExportReport:
    path: Path
    opset: int  # the default-domain opset the file declares
    max_abs_diff: float  # largest |onnxruntime - torch| over all compared logits
    argmax_equal: bool  # every compared row had the same argmax (always True: a mismatch raises)
    input_name: str
    output_name: str
    input_shape: tuple[int, ...]  # (-1, C, H, W); -1 is the dynamic batch axis
    output_shape: tuple[int, ...]  # (-1, classes)
    batch_sizes: tuple[int, ...]  # the batch sizes compared against torch


def export_onnx(
    model: nn.Module,
    path: Path,
    *,
    input_shape: tuple[int, int, int],
    sample: torch.Tensor | None = None,
    opset: int = 18,
    atol: float = 1e-4,
    rtol: float = 1e-3,
    metadata: Mapping[str, str] | None = None,
) -> ExportReport:
    """Export ``model`` (logits out) to ``path`` and verify it; raise ``ExportError`` if any check fails.

    ``input_shape`` is ``(C, H, W)`` of one image. ``sample``, if given, is a normalized float batch
    ``(N, C, H, W)`` of real inputs for the parity check (better than the seeded random input used
    otherwise). ``metadata`` lands in the file's ``metadata_props`` (config, labels... as strings).

    The model is exported in eval mode, on the CPU, in float32: a model elsewhere or in another dtype is
    copied first, and the mode of every submodule is restored afterwards, so the caller's model is left
    as it was.
    """
    path = Path(path)
    _check_input_shape(input_shape)
    generator = torch.Generator().manual_seed(SEED)
    inputs = parity_inputs(sample, input_shape, generator)
    example = torch.randn((EXAMPLE_BATCH_SIZE, *input_shape), generator=generator)

    export_model = on_cpu_in_float32(model)
    modes = {module: module.training for module in export_model.modules()}
    export_model.eval()
    try:
        with replacing(path) as temporary:  # renamed into place only when every check passed
            proto = to_onnx(export_model, example, opset)
            for key, value in (metadata or {}).items():
                proto.metadata_props.add(key=key, value=value)
            onnx.save_model(proto, temporary, save_as_external_data=False)
            try:
                onnx.checker.check_model(temporary, full_check=True)
            except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
                raise ExportError(f"{path.name}: the ONNX checker rejects the export: {exc}") from exc
            num_classes = _check_signature(proto, input_shape, path)
            max_abs_diff = _check_parity(export_model, temporary, inputs, atol=atol, rtol=rtol, name=path.name)
    finally:
        for module, training in modes.items():
            module.training = training

    return ExportReport(
        path=path,
        opset=next(entry.version for entry in proto.opset_import if entry.domain in ("", "ai.onnx")),
        max_abs_diff=max_abs_diff,
        argmax_equal=True,
        input_name=INPUT_NAME,
        output_name=OUTPUT_NAME,
        input_shape=(-1, *input_shape),
        output_shape=(-1, num_classes),
        batch_sizes=tuple(len(batch) for batch in inputs),
    )


# ---------------------------------------------------------------------------------------------------------
# Steps
# ---------------------------------------------------------------------------------------------------------


def _check_input_shape(input_shape: tuple[int, ...]) -> None:
    if len(input_shape) != 3 or not all(isinstance(size, int) and size > 0 for size in input_shape):
        raise ValueError(f"input_shape must be (C, H, W) with positive ints, got {input_shape!r}")


def parity_inputs(
    sample: torch.Tensor | None, input_shape: tuple[int, int, int], generator: torch.Generator
) -> list[torch.Tensor]:
    """Batches of 1 and 3 (and the whole sample when it has more rows), sample rows first."""
    needed = max(PARITY_BATCH_SIZES)
    if sample is None:
        data = torch.randn((needed, *input_shape), generator=generator)
    else:
        if sample.ndim != 4 or tuple(sample.shape[1:]) != input_shape or len(sample) == 0:
            raise ValueError(f"sample must be (N, *{input_shape}) with N >= 1, got {tuple(sample.shape)}")
        if not sample.is_floating_point():
            raise ValueError(f"sample must be a normalized float batch, got {sample.dtype}")
        data = sample.detach().to("cpu", torch.float32)
        if len(data) < needed:  # top up with random rows
            data = torch.cat([data, torch.randn((needed - len(data), *input_shape), generator=generator)])
    batches = [data[:size] for size in PARITY_BATCH_SIZES]
    if len(data) > needed:
        batches.append(data)
    return batches


def on_cpu_in_float32(model: nn.Module) -> nn.Module:
    tensors = [*model.parameters(), *model.buffers()]
    if all(t.device.type == "cpu" and (t.dtype == torch.float32 or not t.is_floating_point()) for t in tensors):
        return model
    return copy.deepcopy(model).to(device="cpu", dtype=torch.float32)


def to_onnx(
    model: nn.Module, example: torch.Tensor, opset: int, output_names: tuple[str, ...] = (OUTPUT_NAME,)
) -> onnx.ModelProto:
    """The model traced with ``example`` (a batch of 2, its axis 0 dynamic) as an ONNX proto, weights inside."""
    try:
        program = torch.onnx.export(
            model,
            (example,),
            dynamo=True,
            input_names=[INPUT_NAME],
            output_names=list(output_names),
            opset_version=opset,
            # One entry per positional input: axis 0 of the first (only) input is the batch axis.
            dynamic_shapes=({0: torch.export.Dim(BATCH_AXIS_NAME)},),
            external_data=False,
            verbose=False,
        )
    except Exception as exc:  # torch raises a dozen unrelated types from tracing and translation
        root: BaseException = exc
        while root.__cause__ is not None:  # torch wraps the real reason in "step n/3 failed" errors
            root = root.__cause__
        # e.g. "Failed to export the model with torch.export"
        stage = _first_line(exc).split(". ")[0].rstrip(".")
        cause = f"; {type(root).__name__}: {_first_line(root)}" if root is not exc else ""
        raise ExportError(f"torch.onnx.export failed for {type(model).__name__}: {stage}{cause}") from exc
    if program is None:  # only the TorchScript exporter returns None
        raise ExportError("torch.onnx.export returned no ONNX program")
    return program.model_proto


def _first_line(exc: BaseException) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip()  # torch colours its messages for terminals
    return text.splitlines()[0] if text else ""


def _check_signature(proto: onnx.ModelProto, input_shape: tuple[int, int, int], path: Path) -> int:
    """Names ``input``/``logits``, a symbolic batch axis, fixed C, H, W; returns the number of classes."""

    def dims(value: onnx.ValueInfoProto) -> list[int | str]:
        return [dim.dim_param or dim.dim_value for dim in value.type.tensor_type.shape.dim]

    inputs, outputs = list(proto.graph.input), list(proto.graph.output)
    if [value.name for value in inputs] != [INPUT_NAME] or [value.name for value in outputs] != [OUTPUT_NAME]:
        raise ExportError(
            f"{path.name}: expected input {INPUT_NAME!r} and output {OUTPUT_NAME!r}, got inputs "
            f"{[value.name for value in inputs]} and outputs {[value.name for value in outputs]}"
        )
    input_dims, output_dims = dims(inputs[0]), dims(outputs[0])
    if (
        len(input_dims) != 4
        or not isinstance(input_dims[0], str)
        or input_dims[1:] != list(input_shape)
        or len(output_dims) != 2
        or not isinstance(output_dims[0], str)
        or not isinstance(output_dims[1], int)
    ):
        raise ExportError(
            f"{path.name}: expected shapes (batch, {', '.join(map(str, input_shape))}) -> (batch, classes), "
            f"got {input_dims} -> {output_dims}"
        )
    return output_dims[1]


def _check_parity(
    model: nn.Module, onnx_path: Path, inputs: list[torch.Tensor], *, atol: float, rtol: float, name: str
) -> float:
    """Compare onnxruntime (CPU) with torch on every batch; return the largest absolute difference."""
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    max_abs_diff = 0.0
    for batch in inputs:
        with torch.no_grad():
            expected = model(batch)
        if not isinstance(expected, torch.Tensor):
            raise ExportError(f"{name}: the model must return one logits tensor, got {type(expected).__name__}")
        want = expected.numpy()
        got = session.run([OUTPUT_NAME], {INPUT_NAME: batch.numpy()})[0]
        if got.shape != want.shape:
            raise ExportError(f"{name}: onnxruntime gave shape {got.shape}, torch {want.shape}")
        diff = float(np.max(np.abs(got - want))) if got.size else 0.0
        max_abs_diff = max(max_abs_diff, diff)
        close = bool(np.all(np.abs(got - want) <= atol + rtol * np.abs(want)))  # False for NaN
        argmax_equal = bool(np.array_equal(got.argmax(axis=1), want.argmax(axis=1)))
        if not (close and argmax_equal):
            raise ExportError(
                f"{name}: onnxruntime and torch disagree on a batch of {len(batch)}: max abs diff "
                f"{diff:.3g} (atol {atol:g}, rtol {rtol:g}), same argmax: {argmax_equal}"
            )
    return max_abs_diff
