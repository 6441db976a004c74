"""What ``--evaluate-on`` records in an imported version's metrics, under the names trained versions use:
``test_accuracy``, ``ece`` (with the version's temperature), ``ece_uncalibrated`` (before it), one
``accuracy/<label>`` per label that has images, and ``test_images``."""

from typing import Literal

import numpy as np

from service.importing.calibrate import expected_calibration_error, softmax


def probabilities_of(outputs: np.ndarray, scores: Literal["logits", "probabilities"], temperature: float) -> np.ndarray:
    return outputs.astype(np.float64) if scores == "probabilities" else softmax(outputs, temperature)


def evaluation_metrics(
    outputs: np.ndarray,
    targets: np.ndarray,
    labels: tuple[str, ...],
    *,
    scores: Literal["logits", "probabilities"],
    temperature: float,
) -> dict[str, float]:
    """Metrics of the model's ``outputs`` (N, classes) on images whose true label indices are ``targets``."""
    probabilities = probabilities_of(outputs, scores, temperature)
    predicted = probabilities.argmax(axis=1)
    metrics = {
        "test_accuracy": round(float((predicted == targets).mean()), 5),
        "ece": round(expected_calibration_error(probabilities, targets), 5),
        "ece_uncalibrated": round(expected_calibration_error(probabilities_of(outputs, scores, 1.0), targets), 5),
        "test_images": float(len(targets)),
    }
    for index, label in enumerate(labels):
        mine = targets == index
        if mine.any():
            metrics[f"accuracy/{label}"] = round(float((predicted[mine] == index).mean()), 5)
    return metrics
