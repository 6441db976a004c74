"""What a published version looks like over V2: its two inputs, its output, its metadata and its config.

Inputs (a request sends exactly one of them):

- the manifest's input (``input``, FP32 ``[-1, C, H, W]``, or ``[-1, H, W, C]`` for a model whose
  ``preprocessing.layout`` is NHWC): images already preprocessed exactly as the manifest's
  ``preprocessing`` says, for clients that do it themselves. The batch axis is always -1: a model that
  takes one image at a time (``input.shape[0] == 1``) is run image by image by its ``Predictor``;
- ``image_bytes`` (BYTES ``[-1]``, ``[-1, 1]`` accepted too): one encoded image (JPEG, PNG, WebP) per element,
  decoded and preprocessed by the server. In JSON each element is the image in base64; a raw body
  (``Inference-Header-Content-Length: 0``) is one image.

Output ``probabilities`` (FP32 ``[-1, classes]``): what the version's ``Predictor`` computes, softmax(logits /
temperature) with the manifest's temperature, or the model's own probabilities when its graph ends in a
softmax (``scores: probabilities``). The model's raw output (the manifest's ``logits``) is not served.
With the classification extension (``classification: k``) the output becomes BYTES ``[-1, k]`` of
``"<probability>:<index>:<label>"``, highest first; Triton puts raw output values where we put
probabilities.
"""

import base64
import binascii
from dataclasses import dataclass
from typing import Any

import numpy as np

from service.api.v2.codec import InferRequest, InvalidInferRequest, OutputTensor, RequestTooLarge
from service.api.v2.tensors import BYTES, InvalidTensor
from service.inference.classify import Classification
from service.repository import Manifest

IMAGE_INPUT = "image_bytes"
PROBABILITIES = "probabilities"
PLATFORM = "onnxruntime_onnx"


@dataclass(frozen=True)
class OutputPlan:
    binary: bool
    classification: int  # k of the classification extension; 0: the probabilities themselves


# ---------------------------------------------------------------- describing a model


def tensor_shape(manifest: Manifest) -> list[int]:
    """The shape of the preprocessed input a request may send: the model's own, with any batch size."""
    return [-1, *manifest.input.shape[1:]]


def probabilities_are(manifest: Manifest) -> str:
    if manifest.scores == "probabilities":
        return "the model's own output (a softmax in its graph)"
    if manifest.calibration == "uncalibrated":
        return "softmax(logits), uncalibrated (temperature 1.0)"
    return "calibrated: softmax(logits / temperature)"


def model_metadata(manifest: Manifest, versions: list[int]) -> dict[str, Any]:
    """The V2 model metadata: ``versions`` are those that infer can name right now (loaded here)."""
    return {
        "name": manifest.name,
        "versions": [str(version) for version in versions],
        "platform": PLATFORM,
        "inputs": [
            {"name": manifest.input.name, "datatype": "FP32", "shape": tensor_shape(manifest)},
            {"name": IMAGE_INPUT, "datatype": BYTES, "shape": [-1]},
        ],
        "outputs": [{"name": PROBABILITIES, "datatype": "FP32", "shape": [-1, len(manifest.labels)]}],
    }


def model_config(
    manifest: Manifest, *, max_images: int, max_queue_delay_ms: float, max_queue_size: int
) -> dict[str, Any]:
    """A Triton-style model configuration. ``max_batch_size`` is the most images one request may carry."""
    return {
        "name": manifest.name,
        "platform": PLATFORM,
        "backend": "onnxruntime",
        "max_batch_size": max_images,
        "input": [
            {
                "name": manifest.input.name,
                "data_type": "TYPE_FP32",
                "format": f"FORMAT_{manifest.preprocessing.layout}",
                "dims": tensor_shape(manifest)[1:],
                "optional": True,  # send this or image_bytes
            },
            {
                "name": IMAGE_INPUT,
                "data_type": "TYPE_STRING",
                "format": "FORMAT_NONE",
                "dims": [1],
                "reshape": {"shape": []},
                "optional": True,
            },
        ],
        "output": [{"name": PROBABILITIES, "data_type": "TYPE_FP32", "dims": [len(manifest.labels)]}],
        "dynamic_batching": {
            "max_queue_delay_microseconds": int(max_queue_delay_ms * 1000),
            "default_queue_policy": {"max_queue_size": max_queue_size},
        },
        "parameters": {
            "probabilities": {"string_value": probabilities_are(manifest)},
            "temperature": {"string_value": repr(manifest.temperature)},
        },
    }


def inputs_help(manifest: Manifest) -> str:
    return (
        f"{manifest.name} takes {manifest.input.name!r} (FP32 {tensor_shape(manifest)}, preprocessed) "
        f"or {IMAGE_INPUT!r} (BYTES [-1], encoded images)"
    )


# ---------------------------------------------------------------- reading a request


def model_input(request: InferRequest, manifest: Manifest, max_images: int) -> np.ndarray | list[bytes]:
    """The request's one input: a (n, C, H, W) float32 array (an NHWC tensor transposed, without a copy), or n
    encoded images."""
    if not request.inputs:
        raise InvalidTensor(f"the request has no inputs; {inputs_help(manifest)}")
    names = [tensor.name for tensor in request.inputs]
    for tensor in request.inputs:
        if tensor.name not in (manifest.input.name, IMAGE_INPUT):
            raise InvalidTensor(f"{tensor.where}: unknown input {tensor.name!r}; {inputs_help(manifest)}")
    if len(names) > 1:
        raise InvalidTensor(f"the request sends inputs {names}; send exactly one: {inputs_help(manifest)}")
    [tensor] = request.inputs
    count = tensor.shape[0] if tensor.shape else 0
    if count > max_images:
        raise RequestTooLarge(f"{tensor.where}: {count} images in one request; the limit is {max_images}")
    if tensor.name == IMAGE_INPUT:
        return _images(tensor.where, tensor.datatype, tensor.shape, tensor.values, tensor.binary)
    return _preprocessed(tensor.where, tensor.datatype, tensor.shape, tensor.values, manifest)


def _images(where: str, datatype: str, shape: tuple[int, ...], values: Any, binary: bool) -> list[bytes]:
    if datatype != BYTES:
        raise InvalidTensor(f"{where}: {IMAGE_INPUT} takes BYTES (encoded images), got {datatype}")
    if len(shape) not in (1, 2) or (len(shape) == 2 and shape[1] != 1):
        raise InvalidTensor(f"{where}: shape {list(shape)} should be [n] or [n, 1]: one encoded image per element")
    if not values:
        raise InvalidTensor(f"{where}: no images (shape {list(shape)})")
    if binary:
        return list(values)
    images = []
    for position, text in enumerate(values):  # JSON strings cannot carry raw image bytes: base64
        try:
            images.append(base64.b64decode(text, validate=True))
        except (binascii.Error, ValueError) as error:
            raise InvalidTensor(
                f"{where}: element {position} is not valid base64 ({error}); in JSON, send each image "
                "base64-encoded, or send it raw with the binary tensor extension"
            ) from error
    return images


def _preprocessed(where: str, datatype: str, shape: tuple[int, ...], values: Any, manifest: Manifest) -> np.ndarray:
    expected = tensor_shape(manifest)
    nhwc = manifest.preprocessing.layout == "NHWC"
    if datatype != "FP32":
        raise InvalidTensor(f"{where}: takes FP32, got {datatype} (convert with array.astype(numpy.float32))")
    if len(shape) != len(expected) or any(want not in (-1, got) for got, want in zip(shape, expected, strict=True)):
        axes = "batch, height, width, channels" if nhwc else "batch, channels, height, width"
        raise InvalidTensor(
            f"{where}: shape {list(shape)} does not fit the model's input {expected} "
            f"({axes}; preprocess as the manifest says, or send image_bytes)"
        )
    if shape[0] == 0:
        raise InvalidTensor(f"{where}: no images (shape {list(shape)})")
    array: np.ndarray = values
    return array.transpose(0, 3, 1, 2) if nhwc else array  # the service's batches are (n, C, H, W)


def output_plans(request: InferRequest, manifest: Manifest) -> list[OutputPlan]:
    """What to return: every output (binary_data_output decides the form) unless the request names them."""
    if request.outputs is None:
        return [OutputPlan(request.binary_output, 0)]
    if len(request.outputs) > 1:
        names = [output.name for output in request.outputs]
        raise InvalidInferRequest(f"outputs {names}: this model has one output, {PROBABILITIES!r}; ask for it once")
    plans = []
    for output in request.outputs:
        if output.name != PROBABILITIES:
            hint = " (the raw logits are not served)" if output.name == manifest.output.name else ""
            raise InvalidInferRequest(
                f"{output.where}: unknown output {output.name!r}{hint}; this model returns {PROBABILITIES!r}, "
                f"FP32 [-1, {len(manifest.labels)}] calibrated probabilities"
            )
        if output.classification > len(manifest.labels):
            raise InvalidInferRequest(
                f"{output.where}: parameters.classification is {output.classification} but the model has only "
                f"{len(manifest.labels)} labels"
            )
        plans.append(OutputPlan(output.binary, output.classification))
    return plans


# ---------------------------------------------------------------- writing the answer


def ranks_needed(plans: list[OutputPlan]) -> int:
    """Labels to rank per image: the largest ``classification`` asked for, else 1 (the top-1 for metrics)."""
    return max([1, *(plan.classification for plan in plans)])


def build_outputs(plans: list[OutputPlan], answer: Classification) -> list[OutputTensor]:
    """The answer as the planned outputs: its probabilities (n, classes), or its ranked labels as strings for
    the classification extension."""
    probabilities = answer.probabilities
    outputs = []
    for plan in plans:
        if not plan.classification:
            outputs.append(OutputTensor(PROBABILITIES, "FP32", probabilities.shape, probabilities, plan.binary))
            continue
        k = plan.classification
        ranked = [
            f"{p.probability:f}:{p.index}:{p.label}".encode()  # "%f", as Triton formats the value
            for result in answer.results
            for p in result.top[:k]
        ]
        outputs.append(OutputTensor(PROBABILITIES, BYTES, (len(probabilities), k), ranked, plan.binary))
    return outputs
