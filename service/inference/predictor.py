"""The data plane of one published version: its onnxruntime session and its temperature.

``Predictor.predict`` turns a batch of preprocessed images into calibrated probabilities, and it is the
only place that does: the batcher calls it for the API, ``imgcls classify`` calls it directly. The
temperature belongs here because calibration is a fact about the model (fitted on held-out data and
stored in the manifest), not about how a request reached it.
"""

from pathlib import Path

import numpy as np
import onnxruntime as ort

from service.inference.errors import VariantNotFound
from service.repository import CorruptVersion, Manifest
from service.repository.store import ONNX_FILE

FP32 = "fp32"

# What onnxruntime raises for a file that is no valid model (its pybind exceptions derive from Exception)
_state = ort.capi.onnxruntime_pybind11_state
UNLOADABLE = (_state.InvalidProtobuf, _state.InvalidGraph, _state.NoModel, _state.Fail, _state.NotImplemented)


def model_file(folder: Path, manifest: Manifest, variant: str) -> Path:
    """The ONNX file of ``variant`` ("fp32" or a manifest variant) in a version folder."""
    if variant == FP32:
        return folder / ONNX_FILE
    if variant not in manifest.variants:
        known = ", ".join([FP32, *manifest.variants])
        raise VariantNotFound(f"{manifest.name} v{manifest.version} has no variant {variant!r} (known: {known})")
    return folder / manifest.variants[variant].file


class Predictor:
    """(N, C, H, W) float32 preprocessed images -> (N, classes) calibrated probabilities.

    ``predict`` releases the GIL inside onnxruntime, so the batcher may call it from a worker thread.
    """

    def __init__(self, onnx_path: Path, temperature: float, *, providers: list[str], intra_op_threads: int) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only: a missing optional provider is not news
        try:
            self._session = ort.InferenceSession(str(onnx_path), options, providers=providers)
        except UNLOADABLE as error:  # a file that matches its manifest and still is no model onnxruntime runs
            raise CorruptVersion(f"{onnx_path} cannot be loaded by onnxruntime: {error}") from error
        self.temperature = np.float32(temperature)
        self._input_name = self._session.get_inputs()[0].name
        self._output_names = [self._session.get_outputs()[0].name]
        self.provider = self._session.get_providers()[0]  # the one that actually runs

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """softmax(logits / temperature), row by row, computed in place on the logits."""
        scaled: np.ndarray = self._session.run(self._output_names, {self._input_name: batch})[0]
        scaled /= self.temperature
        scaled -= scaled.max(axis=1, keepdims=True)
        np.exp(scaled, out=scaled)
        scaled /= scaled.sum(axis=1, keepdims=True)
        return scaled

    def warm_up(self, sample_shape: tuple[int, ...], batch_sizes: tuple[int, ...]) -> None:
        """Run each batch size once so that the first real requests do not pay for allocation and tuning."""
        for size in batch_sizes:
            self.predict(np.zeros((size, *sample_shape), dtype=np.float32))
