"""The data plane of one published version: its onnxruntime session and what the manifest says about it.

``Predictor.predict`` turns a batch of preprocessed images into calibrated probabilities, and it is the
only place that does: the batcher calls it for the API, ``imgcls classify`` calls it directly. What it
honours belongs to the model, not to how a request reached it, so it is read from the manifest here, once:

- ``temperature`` and ``scores``: logits become softmax(logits / temperature); a model whose graph ends in
  a softmax (``scores: probabilities``, imported models) is served as it is, without a second softmax;
- ``preprocessing.layout``: the rest of the service makes (N, C, H, W) batches; an NHWC model (as Keras
  exports) gets them transposed to (N, H, W, C) here, just before onnxruntime;
- ``input.shape[0]``: 1 marks a model that takes one image at a time; it is run image by image.
"""

from pathlib import Path
from typing import Literal

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


def session_options(intra_op_threads: int) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only: a missing optional provider is not news
    return options


def calibrated(scores: np.ndarray, temperature: np.float32, kind: Literal["logits", "probabilities"]) -> np.ndarray:
    """(N, classes) model outputs -> probabilities: softmax(logits / temperature), computed in place on the
    logits; probabilities as they are. Also used by explanations (inference/explain.py), whose graph gives logits."""
    if kind == "probabilities":
        return scores
    scores /= temperature
    scores -= scores.max(axis=1, keepdims=True)
    np.exp(scores, out=scores)
    scores /= scores.sum(axis=1, keepdims=True)
    return scores


class Predictor:
    """(N, C, H, W) float32 preprocessed images -> (N, classes) calibrated probabilities.

    ``predict`` releases the GIL inside onnxruntime, so the batcher may call it from a worker thread.
    """

    def __init__(
        self,
        onnx_path: Path,
        *,
        temperature: float,
        scores: Literal["logits", "probabilities"],
        layout: Literal["NCHW", "NHWC"],
        one_at_a_time: bool,
        sample_shape: tuple[int, int, int],  # (C, H, W) of one preprocessed image, for warm_up
        providers: list[str],
        intra_op_threads: int,
    ) -> None:
        try:
            self._session = ort.InferenceSession(str(onnx_path), session_options(intra_op_threads), providers=providers)
        except UNLOADABLE as error:  # a file that matches its manifest and still is no model onnxruntime runs
            raise CorruptVersion(f"{onnx_path} cannot be loaded by onnxruntime: {error}") from error
        self.temperature = np.float32(temperature)
        self.scores = scores
        self.layout = layout
        self.one_at_a_time = one_at_a_time
        self.sample_shape = sample_shape
        self._input_name = self._session.get_inputs()[0].name
        self._output_names = [self._session.get_outputs()[0].name]
        self.provider = self._session.get_providers()[0]  # the one that actually runs

    @classmethod
    def for_manifest(
        cls, onnx_path: Path, manifest: Manifest, *, providers: list[str], intra_op_threads: int
    ) -> "Predictor":
        """The predictor of ``onnx_path`` (the version's model.onnx or one of its variants) as ``manifest`` says."""
        preprocessing = manifest.preprocessing
        return cls(
            onnx_path,
            temperature=manifest.temperature,
            scores=manifest.scores,
            layout=preprocessing.layout,
            one_at_a_time=manifest.input.shape[0] == 1,
            sample_shape=(preprocessing.channels, *preprocessing.input_size),
            providers=providers,
            intra_op_threads=intra_op_threads,
        )

    def outputs(self, batch: np.ndarray) -> np.ndarray:
        """The model's own output, (N, classes) float32, for an (N, C, H, W) batch: logits or probabilities."""
        if self.layout == "NHWC":
            batch = np.ascontiguousarray(batch.transpose(0, 2, 3, 1))  # (N, H, W, C)
        if self.one_at_a_time and len(batch) != 1:
            rows = [self._run(batch[i : i + 1]) for i in range(len(batch))]
            return np.concatenate(rows)
        return self._run(batch)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Probabilities: the model's own, or softmax(logits / temperature) computed in place on the logits."""
        return calibrated(self.outputs(batch), self.temperature, self.scores)

    def warm_up(self, batch_sizes: tuple[int, ...]) -> None:
        """Run each batch size once so that the first real requests do not pay for allocation and tuning."""
        for size in batch_sizes:
            self.predict(np.zeros((size, *self.sample_shape), dtype=np.float32))

    def _run(self, batch: np.ndarray) -> np.ndarray:
        output: np.ndarray = self._session.run(self._output_names, {self._input_name: batch})[0]
        return output.astype(np.float32, copy=False)
