"""The evaluation report on small cases computed by hand (service/evaluation/report.py)."""

import json

import numpy as np
import pytest

from service.evaluation.report import Averages, EvaluationReport, decode_report, encode_report, evaluation_report

LABELS = ("a", "b", "c")


def rows(predicted: list[int], confidence: list[float], classes: int = 3) -> np.ndarray:
    """Probability rows whose top-1 is ``predicted`` with ``confidence``, the rest shared by the other classes."""
    probabilities = np.empty((len(predicted), classes))
    for row, (index, top) in enumerate(zip(predicted, confidence, strict=True)):
        probabilities[row] = (1 - top) / (classes - 1)
        probabilities[row, index] = top
    return probabilities


# Six images: "c" is never predicted; confidences stay off the bin edges (k / 15).
TARGETS = [0, 0, 0, 1, 1, 2]
PREDICTED = [0, 0, 1, 1, 0, 1]
CONFIDENCE = [0.9, 0.83, 0.62, 0.7, 0.5, 0.42]  # right, right, wrong, right, wrong, wrong


@pytest.fixture
def report() -> EvaluationReport:
    return evaluation_report(rows(PREDICTED, CONFIDENCE), np.array(TARGETS), LABELS, dataset="hand")


def test_precision_recall_f1_and_support_per_class(report: EvaluationReport) -> None:
    a, b, c = report.classes
    assert (a.label, a.precision, a.recall, a.f1, a.support, a.predicted) == ("a", 0.66667, 0.66667, 0.66667, 3, 3)
    assert (b.precision, b.recall, b.f1, b.support, b.predicted) == (0.33333, 0.5, 0.4, 2, 3)
    # never predicted: precision 0/0 is 0, and so is everything else
    assert (c.precision, c.recall, c.f1, c.support, c.predicted) == (0.0, 0.0, 0.0, 1, 0)
    assert report.accuracy == 0.5 and report.images == 6 and report.labels == LABELS
    assert report.macro == Averages(precision=0.33333, recall=0.38889, f1=0.35556)  # (2/3 + 1/3 + 0) / 3, ...
    assert report.weighted == Averages(precision=0.44444, recall=0.5, f1=0.46667)  # (3 * 2/3 + 2 * 1/3) / 6, ...


def test_the_confusion_matrix_counts_true_against_predicted(report: EvaluationReport) -> None:
    assert report.confusion_matrix == ((2, 1, 0), (1, 1, 0), (0, 1, 0))


def test_the_threshold_explorer_covers_the_confident_images(report: EvaluationReport) -> None:
    points = {point.threshold: point for point in report.thresholds}
    assert [p.threshold for p in report.thresholds] == [k / 100 for k in range(101)]
    assert (points[0.0].covered, points[0.0].coverage, points[0.0].accuracy) == (6, 1.0, 0.5)
    assert (points[0.5].covered, points[0.5].coverage, points[0.5].accuracy) == (5, 0.83333, 0.6)  # 0.5 >= 0.5
    assert (points[0.71].covered, points[0.71].accuracy) == (2, 1.0)
    assert (points[0.91].covered, points[0.91].coverage, points[0.91].accuracy) == (0, 0.0, None)


def test_ece_and_reliability_bins_on_a_known_example() -> None:
    # four images at 0.75, three right: no gap; two at 0.95, one right: a gap of 0.45 over a third of the images
    probabilities = rows([0, 0, 0, 1, 1, 1], [0.75, 0.75, 0.75, 0.75, 0.95, 0.95])
    report = evaluation_report(probabilities, np.array([0, 0, 0, 0, 1, 0]), LABELS, dataset="hand")
    assert report.ece == pytest.approx(0.15, abs=1e-5)
    assert len(report.reliability) == 15
    filled = [(b.low, b.high, b.count, b.confidence, b.accuracy) for b in report.reliability if b.count]
    assert filled == [(0.73333, 0.8, 4, 0.75, 0.75), (0.93333, 1.0, 2, 0.95, 0.5)]
    assert all(b.confidence is None and b.accuracy is None for b in report.reliability if not b.count)
    assert report.reliability[0].low == 0.0 and report.reliability[-1].high == 1.0


def test_a_perfectly_calibrated_sure_model_has_no_gap() -> None:
    report = evaluation_report(np.eye(3)[[0, 1, 2, 1]], np.array([0, 1, 2, 1]), LABELS, dataset="hand")
    assert (report.accuracy, report.ece) == (1.0, 0.0)
    assert report.macro == report.weighted == Averages(1.0, 1.0, 1.0)
    assert all(point.accuracy == 1.0 and point.coverage == 1.0 for point in report.thresholds)


def test_coverage_falls_as_the_threshold_rises() -> None:
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((500, 4)) * 3
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    targets = rng.integers(0, 4, 500)
    report = evaluation_report(probabilities, targets, ("w", "x", "y", "z"), dataset="random")
    covered = [point.covered for point in report.thresholds]
    assert covered[0] == 500 and covered == sorted(covered, reverse=True) and covered[-1] < 500
    assert sum(b.count for b in report.reliability) == 500
    assert sum(map(sum, report.confusion_matrix)) == 500
    assert [c.support for c in report.classes] == np.bincount(targets, minlength=4).tolist()


def test_a_class_without_test_images_is_left_out_of_the_macro_average() -> None:
    report = evaluation_report(rows([0, 1], [0.9, 0.9]), np.array([0, 1]), LABELS, dataset="hand")
    assert report.classes[2].support == 0 and report.classes[2].recall == 0.0
    assert report.macro == Averages(1.0, 1.0, 1.0)


def test_the_json_form_round_trips(report: EvaluationReport) -> None:
    data = encode_report(report)
    assert decode_report(data) == report
    plain = json.loads(data)
    never_predicted = {"label": "c", "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1, "predicted": 0}
    assert plain["classes"][2] == never_predicted
    assert plain["thresholds"][91]["accuracy"] is None and plain["schema_version"] == 1


def test_no_images_or_a_shape_mismatch_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one labelled image"):
        evaluation_report(np.zeros((0, 3)), np.zeros(0), LABELS, dataset="none")
    with pytest.raises(ValueError, match="do not fit 2 images of 3 labels"):
        evaluation_report(np.zeros((2, 4)), np.zeros(2), LABELS, dataset="wrong")
