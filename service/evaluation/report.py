"""The evaluation report of a version: how good it is, per class, how far its probabilities can be trusted,
and where a confidence threshold would leave it. Computed in numpy from (probabilities, true labels) on a
test set, so training (at the end of every run), the ONNX import (``--evaluate-on``), ``imgcls evaluate
--report`` and the API all read one definition.

Conventions (those of scikit-learn's ``classification_report`` with ``zero_division=0``):

- precision of a class never predicted, recall of a class with no test images, and F1 where precision
  and recall are both 0 are 0.0 (``predicted`` and ``support`` say which case it is);
- the macro average is the unweighted mean over the classes that have test images (``support > 0``); the
  weighted average weights each class by its support;
- reliability bins are 15 equal-width confidence bins ``(low, high]`` (confidence: the top-1 probability);
  ECE is their confidence-accuracy gap, weighted by the share of images in each;
- the threshold explorer has one point per threshold 0.00, 0.01, ... 1.00: the images whose top-1
  probability is at least the threshold are *covered* (the service marks the others ``low_confidence``:
  ``IMGCLS_CONFIDENCE_THRESHOLDS``), with their share (coverage) and their accuracy.

Every rate is rounded to 5 decimals, as the manifest's metrics are.
"""

import itertools
from datetime import UTC, datetime

import msgspec
import numpy as np

REPORT_SCHEMA_VERSION = 1
ECE_BINS = 15
THRESHOLD_STEPS = 100  # thresholds 0, 1/100, ..., 1
DIGITS = 5


class ClassMetrics(msgspec.Struct, frozen=True):
    label: str
    precision: float  # of the images predicted as this class, the share that are (0.0 when none is)
    recall: float  # of the images of this class, the share predicted as it (its accuracy)
    f1: float
    support: int  # test images of this class
    predicted: int  # test images predicted as this class


class Averages(msgspec.Struct, frozen=True):
    precision: float
    recall: float
    f1: float


class ReliabilityBin(msgspec.Struct, frozen=True):
    low: float  # the bin holds top-1 probabilities in (low, high]
    high: float
    count: int  # images in it
    confidence: float | None  # their mean top-1 probability; None for an empty bin
    accuracy: float | None  # the share of them predicted right; None for an empty bin


class ThresholdPoint(msgspec.Struct, frozen=True):
    threshold: float
    covered: int  # images with a top-1 probability >= threshold
    coverage: float  # covered / images
    accuracy: float | None  # of the covered images; None when none is covered


class EvaluationReport(msgspec.Struct, frozen=True):
    """``report.json``: one version measured on one labelled test set."""

    dataset: str  # what it was measured on: "fashion-mnist" (its test split), "folder:/path", "dataset:<id>"
    images: int
    accuracy: float
    macro: Averages  # over the classes with test images
    weighted: Averages  # by support
    classes: tuple[ClassMetrics, ...]  # in label order
    confusion_matrix: tuple[tuple[int, ...], ...]  # [true class][predicted class], label order
    ece: float  # expected calibration error of the probabilities as served
    reliability: tuple[ReliabilityBin, ...]
    thresholds: tuple[ThresholdPoint, ...]  # thresholds rising from 0 to 1
    created_at: str  # ISO 8601, UTC
    schema_version: int = REPORT_SCHEMA_VERSION

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(row.label for row in self.classes)


def calibration_bins(
    probabilities: np.ndarray, targets: np.ndarray, *, bins: int = ECE_BINS
) -> tuple[list[tuple[float, float, int, float | None, float | None]], float]:
    """``(low, high, count, mean confidence, accuracy)`` of each bin, unrounded (None for an empty bin), and
    the ECE (NaN without images). The one definition of ECE on the service side (``importing.calibrate``)."""
    confidence = probabilities.max(axis=1).astype(np.float64)
    correct = (probabilities.argmax(axis=1) == targets).astype(np.float64)
    result: list[tuple[float, float, int, float | None, float | None]] = []
    ece = 0.0
    for low, high in itertools.pairwise(np.linspace(0.0, 1.0, bins + 1)):
        in_bin = (confidence > low) & (confidence <= high)
        count = int(in_bin.sum())
        if not count:
            result.append((float(low), float(high), 0, None, None))
            continue
        mean_confidence, accuracy = float(confidence[in_bin].mean()), float(correct[in_bin].mean())
        result.append((float(low), float(high), count, mean_confidence, accuracy))
        ece += abs(mean_confidence - accuracy) * count / len(targets)
    return result, (ece if len(targets) else float("nan"))


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, DIGITS)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator elementwise, 0.0 where the denominator is 0."""
    return np.divide(numerator, denominator, out=np.zeros(len(numerator)), where=denominator > 0)


def _thresholds(confidence: np.ndarray, correct: np.ndarray) -> tuple[ThresholdPoint, ...]:
    points = []
    for step in range(THRESHOLD_STEPS + 1):
        threshold = step / THRESHOLD_STEPS  # exactly the float a user writes, e.g. 0.07
        covered = confidence >= threshold
        count = int(covered.sum())
        points.append(
            ThresholdPoint(
                threshold=threshold,
                covered=count,
                coverage=round(count / len(confidence), DIGITS),
                accuracy=round(float(correct[covered].mean()), DIGITS) if count else None,
            )
        )
    return tuple(points)


def evaluation_report(
    probabilities: np.ndarray, targets: np.ndarray, labels: tuple[str, ...], *, dataset: str
) -> EvaluationReport:
    """The report of (N, classes) ``probabilities`` (as served: calibrated when the version is) on images whose
    true label indices are ``targets`` (N,). Raises ``ValueError`` for no images or mismatched shapes."""
    targets = np.asarray(targets, dtype=np.int64)
    if len(targets) == 0:
        raise ValueError("an evaluation report needs at least one labelled image")
    if probabilities.shape != (len(targets), len(labels)):
        raise ValueError(
            f"probabilities of shape {probabilities.shape} do not fit {len(targets)} images of {len(labels)} labels"
        )
    predicted = probabilities.argmax(axis=1)
    matrix = np.zeros((len(labels), len(labels)), dtype=np.int64)
    np.add.at(matrix, (targets, predicted), 1)
    hits, support, called = np.diag(matrix), matrix.sum(axis=1), matrix.sum(axis=0)
    precision, recall = _ratio(hits, called), _ratio(hits, support)
    f1 = _ratio(2 * precision * recall, precision + recall)
    present = support > 0

    def average(weights: np.ndarray) -> Averages:
        means = (float(np.average(x[present], weights=weights)) for x in (precision, recall, f1))
        return Averages(*(round(mean, DIGITS) for mean in means))

    bins, ece = calibration_bins(probabilities, targets)
    correct = (predicted == targets).astype(np.float64)
    return EvaluationReport(
        dataset=dataset,
        images=len(targets),
        accuracy=round(float(correct.mean()), DIGITS),
        macro=average(np.ones(int(present.sum()))),
        weighted=average(support[present].astype(np.float64)),
        classes=tuple(
            ClassMetrics(
                label=label,
                precision=round(float(precision[i]), DIGITS),
                recall=round(float(recall[i]), DIGITS),
                f1=round(float(f1[i]), DIGITS),
                support=int(support[i]),
                predicted=int(called[i]),
            )
            for i, label in enumerate(labels)
        ),
        confusion_matrix=tuple(tuple(int(count) for count in row) for row in matrix),
        ece=round(ece, DIGITS),
        reliability=tuple(
            ReliabilityBin(round(low, DIGITS), round(high, DIGITS), count, _rounded(conf), _rounded(acc))
            for low, high, count, conf, acc in bins
        ),
        thresholds=_thresholds(probabilities.max(axis=1).astype(np.float64), correct),
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )


def encode_report(report: EvaluationReport) -> bytes:
    return msgspec.json.encode(report) + b"\n"


def decode_report(data: bytes) -> EvaluationReport:
    """Raises ``msgspec.DecodeError`` or ``msgspec.ValidationError`` for bytes that are not a report."""
    return msgspec.json.decode(data, type=EvaluationReport)
