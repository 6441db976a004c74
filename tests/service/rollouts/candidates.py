"""Candidate versions the rollout tests publish beside fashion-mnist v1 and v2 (the same model twice): one
that answers differently (its class scores reversed) and one that fails (a reshape that only works for
batches of a multiple of three images), made from v2's graph with onnx.helper."""

from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from service.repository import ModelRepository

MODEL = "fashion-mnist"


def _publish(repository: ModelRepository, graph_of: onnx.ModelProto, tmp_path: Path, file: str) -> int:
    path = tmp_path / file
    onnx.save(graph_of, str(path))
    manifest = repository.manifest(MODEL, 2)
    return repository.publish(manifest, path, None).version


def _extended(
    repository: ModelRepository, nodes: list[onnx.NodeProto], constants: list[onnx.TensorProto]
) -> onnx.ModelProto:
    model = onnx.load(str(repository.path(MODEL, 2) / "model.onnx"))
    graph = model.graph
    output = graph.output[0].name
    inner = f"{output}_before"
    for node in graph.node:
        node.output[:] = [inner if name == output else name for name in node.output]
    for node in nodes:
        node.input[:] = [inner if name == "$in" else name for name in node.input]
        node.output[:] = [output if name == "$out" else name for name in node.output]
    graph.node.extend(nodes)
    graph.initializer.extend(constants)
    return model


def publish_disagreeing(repository: ModelRepository, tmp_path: Path) -> int:
    """v2 with its class scores in reverse order: a well-behaved model that mostly answers otherwise."""
    classes = len(repository.manifest(MODEL, 2).labels)
    reverse = numpy_helper.from_array(np.arange(classes - 1, -1, -1, dtype=np.int64), "reverse_classes")
    node = helper.make_node("Gather", ["$in", "reverse_classes"], ["$out"], axis=1)
    return _publish(repository, _extended(repository, [node], [reverse]), tmp_path, "disagreeing.onnx")


def publish_failing(repository: ModelRepository, tmp_path: Path) -> int:
    """v2 whose output goes through a reshape to three rows: onnxruntime fails unless the batch's number of
    scores divides by three (a batch of one always fails, so does its warm-up)."""
    classes = len(repository.manifest(MODEL, 2).labels)
    three_rows = numpy_helper.from_array(np.array([3, -1], dtype=np.int64), "three_rows")
    back = numpy_helper.from_array(np.array([-1, classes], dtype=np.int64), "back")
    nodes = [
        helper.make_node("Reshape", ["$in", "three_rows"], ["in_threes"]),
        helper.make_node("Reshape", ["in_threes", "back"], ["$out"]),
    ]
    return _publish(repository, _extended(repository, nodes, [three_rows, back]), tmp_path, "failing.onnx")
