"""One onnxruntime session for one published version (fp32 or a variant), with its warm-up."""

from pathlib import Path

import numpy as np
import onnxruntime as ort

from service.inference.providers import CPU
from service.repository import CorruptVersion

# What onnxruntime raises for a file that is no valid model (its pybind exceptions derive from Exception)
_state = ort.capi.onnxruntime_pybind11_state
UNLOADABLE = (_state.InvalidProtobuf, _state.InvalidGraph, _state.NoModel, _state.Fail, _state.NotImplemented)


class Runtime:
    """Runs (N, C, H, W) float32 batches through a model and returns (N, classes) logits.

    ``run`` releases the GIL inside onnxruntime, so the batcher calls it from a worker thread.
    """

    def __init__(self, onnx_path: Path, *, providers: list[str], intra_op_threads: int) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only: a missing optional provider is not news
        try:
            self.session = ort.InferenceSession(str(onnx_path), options, providers=providers)
        except UNLOADABLE as error:  # a file that matches its manifest and still is no model onnxruntime runs
            raise CorruptVersion(f"{onnx_path} cannot be loaded by onnxruntime: {error}") from error
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name
        self.provider = self.session.get_providers()[0]  # the one that actually runs

    @property
    def on_gpu(self) -> bool:
        return self.provider != CPU

    def run(self, batch: np.ndarray) -> np.ndarray:
        logits: np.ndarray = self.session.run([self.output_name], {self.input_name: batch})[0]
        return logits

    def warm_up(self, sample_shape: tuple[int, ...], batch_sizes: tuple[int, ...]) -> None:
        """Run each batch size once so that the first real requests do not pay for allocation and tuning."""
        for size in batch_sizes:
            self.run(np.zeros((size, *sample_shape), dtype=np.float32))
