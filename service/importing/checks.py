"""The checks an ONNX file passes before it is published, in the order they run; each failure names its check.

1. ``onnx file``: it parses as an ONNX model (not some other file, not truncated).
2. ``external data``: tensors stored outside the file sit beside it, under plain file names (no folders, no
   ``..``, no links); they are then read into the model, which is published as one self-contained file.
3. ``domains``: every operator comes from ONNX's standard sets (``ai.onnx``, ``ai.onnx.ml``) or from a
   function defined in the file; a custom domain needs a runtime library imgcls does not load.
4. ``opset``: the file's opset is one the installed onnxruntime implements.
5. ``onnx checker``: ``onnx.checker.check_model(full_check=True)``: the graph is well formed, every operator
   exists in its opset, and shape inference agrees with the declared shapes.
6. ``input`` and ``output``: one float32 4-D image input and one float32 2-D output (batch, classes) whose
   width is the number of labels.
7. ``trial inference`` (``trial_run``, once the preprocessing is known): onnxruntime loads it and answers a
   batch of one zero image with finite scores, then a batch of two: a model that answers it has a dynamic
   batch axis; one with a fixed batch of 1, or that fails on two, is served image by image.
"""

import functools
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import onnx
import onnxruntime as ort
from google.protobuf.message import DecodeError
from onnx import external_data_helper

from service.importing.errors import ImportRejected, UnsafeExternalData
from service.importing.options import Dim
from service.repository import Preprocessing

STANDARD_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml"})
SAFE_FILE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,254}")  # fullmatch: no folders, no "..", no hidden file
PROTOBUF_LIMIT = 2**31 - 1  # bytes: an ONNX file with its weights inside cannot be larger
BatchMode = Literal["dynamic", "one at a time"]


@dataclass(frozen=True)
class CheckedModel:
    """A model that passed checks 1-6: self-contained, with its signature read."""

    model: onnx.ModelProto  # external data read in
    had_external_data: bool
    input_name: str
    batch: Dim  # the declared batch axis: None (symbolic) or 1
    dims: tuple[Dim, Dim, Dim]  # the input's axes after the batch, None where symbolic
    output_name: str
    opset: int
    ends_in_softmax: bool  # the output comes straight from a Softmax node


def inspect_model(path: Path, label_count: int) -> CheckedModel:
    """Checks 1-6 on the file at ``path``; raises ``ImportRejected`` (or ``UnsafeExternalData``) naming the first
    that fails."""
    model = read_model(path)
    had_external_data = load_external_data(model, path.parent)
    check_domains(model)
    opset = check_opset(model)
    run_checker(model)
    input_name, batch, dims = image_input(model)
    output_name = classes_output(model, label_count)
    return CheckedModel(
        model, had_external_data, input_name, batch, dims, output_name, opset, ends_in_softmax(model, output_name)
    )


def read_model(path: Path) -> onnx.ModelProto:
    try:
        model = onnx.load_model(path, load_external_data=False)
    except (DecodeError, ValueError, RuntimeError) as error:
        raise ImportRejected("onnx file", f"{path.name} is not an ONNX model, or is truncated ({error})") from error
    if not model.HasField("graph") or model.ir_version < 1 or not model.graph.output:
        raise ImportRejected("onnx file", f"{path.name} is not an ONNX model, or is truncated (it holds no graph)")
    return model


def load_external_data(model: onnx.ModelProto, folder: Path) -> bool:
    """Read every external-data tensor into ``model``; True if there were any. Each must name a plain file in
    ``folder`` (the model file's own): a path elsewhere is refused before anything is opened."""
    external = [t for t in external_data_helper._get_all_tensors(model) if external_data_helper.uses_external_data(t)]
    for tensor in external:
        location = next((entry.value for entry in tensor.external_data if entry.key == "location"), "")
        if not SAFE_FILE_NAME.fullmatch(location) or location in (".", ".."):
            raise UnsafeExternalData(
                "external data",
                f"tensor {tensor.name!r} points at {location[:200]!r}; external data must be a plain file name "
                "beside the model (no folders, no '..')",
            )
        try:
            mode = (folder / location).lstat().st_mode
        except FileNotFoundError:
            raise UnsafeExternalData(
                "external data",
                f"tensor {tensor.name!r} is stored in {location!r}, which is not beside the model (an upload is one "
                "file: save the model with its weights inside, onnx.save_model(..., save_as_external_data=False))",
            ) from None
        if not stat.S_ISREG(mode):
            raise UnsafeExternalData(
                "external data", f"tensor {tensor.name!r} is stored in {location!r}, which is a link or not a file"
            )
        try:
            external_data_helper.load_external_data_for_tensor(tensor, str(folder))
        except (OSError, ValueError, onnx.checker.ValidationError) as error:
            raise UnsafeExternalData(
                "external data", f"tensor {tensor.name!r} cannot be read from {location!r}: {error}"
            ) from error
    if model.ByteSize() > PROTOBUF_LIMIT:
        raise ImportRejected("onnx file", "the model is over 2 GiB with its weights inside; imgcls serves one file")
    return bool(external)


def check_domains(model: onnx.ModelProto) -> None:
    local = {function.domain for function in model.functions}
    nodes = [*_graph_nodes(model.graph), *(node for function in model.functions for node in function.node)]
    custom = sorted({f"{node.domain}.{node.op_type}" for node in nodes if node.domain not in STANDARD_DOMAINS | local})
    imports = sorted({entry.domain for entry in model.opset_import} - STANDARD_DOMAINS - local)
    if custom or imports:
        found = ", ".join(custom) if custom else f"opset imports {', '.join(imports)}"
        raise ImportRejected(
            "domains",
            f"custom operator domains ({found}); imgcls serves models made of ONNX's standard operators only",
        )


def check_opset(model: onnx.ModelProto) -> int:
    """The model's ``ai.onnx`` opset, if onnxruntime implements it and every other standard domain's."""
    opsets = {("" if entry.domain == "ai.onnx" else entry.domain): entry.version for entry in model.opset_import}
    for domain, version in opsets.items():
        if domain in STANDARD_DOMAINS and version > supported_opset(domain):
            shown = domain or "ai.onnx"
            raise ImportRejected(
                "opset",
                f"{shown} opset {version} is newer than onnxruntime {ort.__version__} implements "
                f"(up to {supported_opset(domain)}); export with an older opset",
            )
    return opsets.get("", 0)


@functools.cache
def supported_opset(domain: str) -> int:
    """The newest opset of ``domain`` the installed onnxruntime loads, found by trying (it says so nowhere)."""
    low, high = 1, 64
    while low < high:  # loading is monotonic in the opset: binary search for the last version it takes
        middle = (low + high + 1) // 2
        if _loads_opset(domain, middle):
            low = middle
        else:
            high = middle - 1
    return low


def _loads_opset(domain: str, version: int) -> bool:
    value = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])
    graph = onnx.helper.make_graph([onnx.helper.make_node("Identity", ["x"], ["y"])], "probe", [value], [])
    graph.output.append(onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1]))
    imports = [onnx.helper.make_opsetid(domain, version)]
    if domain:
        imports.append(onnx.helper.make_opsetid("", 13))
    probe = onnx.helper.make_model(graph, opset_imports=imports, ir_version=8)
    try:
        ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    except Exception:  # onnxruntime's pybind errors: any refusal means "not this version"
        return False
    return True


def run_checker(model: onnx.ModelProto) -> None:
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ImportRejected("onnx checker", first[:500]) from error


def image_input(model: onnx.ModelProto) -> tuple[str, Dim, tuple[Dim, Dim, Dim]]:
    """(name, batch axis, the three other axes) of the one image input; initializers listed as inputs (old
    exporters) are not inputs."""
    weights = {initializer.name for initializer in model.graph.initializer}
    inputs = [value for value in model.graph.input if value.name not in weights]
    if len(inputs) != 1:
        names = ", ".join(repr(value.name) for value in inputs) or "none"
        raise ImportRejected("input", f"the model takes {len(inputs)} inputs ({names}); an image classifier takes one")
    [value] = inputs
    dims = _dims(value)
    if value.type.tensor_type.elem_type != onnx.TensorProto.FLOAT or dims is None or len(dims) != 4:
        raise ImportRejected(
            "input",
            f"{value.name!r} is {_describe(value)}; an image classifier takes one float32 4-D batch "
            "(batch, channels, height, width) or (batch, height, width, channels)",
        )
    batch = dims[0]
    if batch not in (None, 1):
        raise ImportRejected(
            "input", f"{value.name!r} has a fixed batch of {batch}; imgcls serves a dynamic batch axis or a batch of 1"
        )
    return value.name, batch, (dims[1], dims[2], dims[3])


def classes_output(model: onnx.ModelProto, label_count: int) -> str:
    outputs = list(model.graph.output)
    if len(outputs) != 1:
        names = ", ".join(repr(value.name) for value in outputs)
        raise ImportRejected("output", f"the model has {len(outputs)} outputs ({names}); a classifier has one")
    [value] = outputs
    dims = _dims(value)
    if value.type.tensor_type.elem_type != onnx.TensorProto.FLOAT or dims is None or len(dims) != 2:
        raise ImportRejected(
            "output", f"{value.name!r} is {_describe(value)}; a classifier outputs float32 (batch, classes)"
        )
    if dims[1] is not None and dims[1] != label_count:
        raise ImportRejected(
            "output",
            f"{value.name!r} has {dims[1]} classes but {label_count} labels were given; give one label per class",
        )
    return value.name


def ends_in_softmax(model: onnx.ModelProto, output_name: str) -> bool:
    """True when ``output_name`` is a Softmax's output (through Identity nodes): the graph gives probabilities."""
    producers = {output: node for node in model.graph.node for output in node.output}
    node = producers.get(output_name)
    while node is not None and node.op_type == "Identity":
        node = producers.get(node.input[0])
    return node is not None and node.op_type == "Softmax" and node.domain in ("", "ai.onnx")


def trial_run(
    checked: CheckedModel, preprocessing: Preprocessing, label_count: int, scores: Literal["logits", "probabilities"]
) -> BatchMode:
    """Check 7: onnxruntime on a batch of one zero image, then of two; how the service must batch it."""
    try:
        options = ort.SessionOptions()
        options.log_severity_level = 4  # a failure is reported as the check's message, not logged too
        session = ort.InferenceSession(checked.model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime's pybind errors share no base class but Exception
        raise ImportRejected(
            "trial inference", f"onnxruntime {ort.__version__} cannot load the model: {error}"
        ) from error
    height, width = preprocessing.input_size
    channels = preprocessing.channels
    image = (channels, height, width) if preprocessing.layout == "NCHW" else (height, width, channels)
    first = _trial(session, checked, np.zeros((1, *image), dtype=np.float32), label_count)
    if scores == "probabilities" and not _are_probabilities(first):
        raise ImportRejected(
            "trial inference",
            "the output was declared probabilities but its rows are not in [0, 1] or do not sum to 1 "
            f"({first[0, :5].tolist()} ...); import it with --output logits",
        )
    if checked.batch == 1:
        return "one at a time"
    try:
        _trial(session, checked, np.zeros((2, *image), dtype=np.float32), label_count)
    except ImportRejected:
        return "one at a time"  # its batch axis is declared dynamic, but the graph only works with one image
    return "dynamic"


def _trial(session: ort.InferenceSession, checked: CheckedModel, batch: np.ndarray, label_count: int) -> np.ndarray:
    try:
        [output] = session.run([checked.output_name], {checked.input_name: batch})
    except Exception as error:  # any failure inside the graph
        raise ImportRejected(
            "trial inference", f"onnxruntime failed on a batch of zeros of shape {list(batch.shape)}: {error}"
        ) from error
    if output.shape != (len(batch), label_count):
        raise ImportRejected(
            "trial inference",
            f"a batch of {len(batch)} gave an output of shape {list(output.shape)}, not [{len(batch)}, {label_count}]",
        )
    if not np.isfinite(output).all():
        raise ImportRejected("trial inference", "a batch of zeros gave NaN or infinite scores")
    return np.asarray(output)


def _are_probabilities(rows: np.ndarray) -> bool:
    return bool((rows >= -1e-4).all() and (rows <= 1 + 1e-4).all() and np.allclose(rows.sum(axis=1), 1.0, atol=1e-3))


def _graph_nodes(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    """Every node of ``graph`` and of the subgraphs inside it (If, Loop, Scan bodies)."""
    nodes = []
    for node in graph.node:
        nodes.append(node)
        for attribute in node.attribute:
            for subgraph in [attribute.g] if attribute.HasField("g") else list(attribute.graphs):
                nodes.extend(_graph_nodes(subgraph))
    return nodes


def _dims(value: onnx.ValueInfoProto) -> list[Dim] | None:
    tensor = value.type.tensor_type
    if not tensor.HasField("shape"):
        return None
    return [dim.dim_value if dim.HasField("dim_value") else None for dim in tensor.shape.dim]


def _describe(value: onnx.ValueInfoProto) -> str:
    dims = _dims(value)
    shape = "of unknown shape" if dims is None else "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]"
    if not value.type.HasField("tensor_type"):
        return "not a tensor"
    kind = onnx.TensorProto.DataType.Name(value.type.tensor_type.elem_type)
    return f"{kind} {shape}"
