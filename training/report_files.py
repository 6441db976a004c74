"""The evaluation report (service/evaluation/report.py) as files a person opens: ``imgcls evaluate --report DIR``
writes them, and every training run writes them into its run folder.

::

    report.json           the report itself, as the API serves it (GET /v1/models/{name}/versions/{version}/report)
    classes.csv           precision, recall, F1, support and predicted count per class
    confusion_matrix.png  counts, shaded by the share of each true class
    reliability.png       accuracy against confidence per bin, with the diagonal of perfect calibration
    thresholds.png        coverage and accuracy of the covered images as the confidence threshold rises
"""

import csv
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
import torch

from service.evaluation.report import EvaluationReport, encode_report
from service.files import replacing, write_atomic
from service.repository.store import REPORT_FILE
from training.reporting import plot_confusion


@dataclass(frozen=True)
class ReportFiles:
    folder: Path

    @property
    def report(self) -> Path:
        return self.folder / REPORT_FILE

    @property
    def classes(self) -> Path:
        return self.folder / "classes.csv"

    @property
    def confusion_matrix(self) -> Path:
        return self.folder / "confusion_matrix.png"

    @property
    def reliability(self) -> Path:
        return self.folder / "reliability.png"

    @property
    def thresholds(self) -> Path:
        return self.folder / "thresholds.png"


def write_report_files(report: EvaluationReport, folder: Path, *, title: str) -> ReportFiles:
    """Every file above in ``folder`` (made when missing); ``title`` heads each picture (model, version, data)."""
    files = ReportFiles(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_atomic(files.report, encode_report(report))
    with replacing(files.classes) as staging, staging.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["label", "precision", "recall", "f1", "support", "predicted"])
        for row in report.classes:
            writer.writerow([row.label, row.precision, row.recall, row.f1, row.support, row.predicted])
    matrix = torch.tensor(report.confusion_matrix, dtype=torch.long)
    plot_confusion(matrix, report.labels, files.confusion_matrix, title=f"{title} · accuracy {report.accuracy:.4f}")
    plot_reliability(report, files.reliability, title=title)
    plot_thresholds(report, files.thresholds, title=title)
    return files


def plot_reliability(report: EvaluationReport, path: Path, *, title: str) -> None:
    """Bars: the accuracy of each confidence bin; the diagonal: where a calibrated model's bars end. Below, how
    many images each bin holds."""
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(6, 6.5), height_ratios=(3, 1), sharex=True)
    filled = [b for b in report.reliability if b.count]
    width = report.reliability[0].high - report.reliability[0].low
    top.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    top.bar(
        [b.low for b in filled],
        [b.accuracy or 0.0 for b in filled],
        width=width,
        align="edge",
        color="tab:blue",
        edgecolor="white",
        label="accuracy in the bin",
    )
    top.plot(
        [b.confidence for b in filled],
        [b.accuracy for b in filled],
        "o",
        color="tab:orange",
        label="(mean confidence, accuracy)",
    )
    top.set_ylabel("accuracy")
    top.set_ylim(0, 1)
    top.legend(loc="upper left")
    top.set_title(f"{title} · ECE {report.ece:.4f}")
    bottom.bar(
        [b.low for b in report.reliability],
        [b.count for b in report.reliability],
        width=width,
        align="edge",
        color="tab:gray",
        edgecolor="white",
    )
    bottom.set_xlabel("confidence (top-1 probability)")
    bottom.set_ylabel("images")
    bottom.set_xlim(0, 1)
    for axis in (top, bottom):
        axis.grid(alpha=0.3)
    figure.tight_layout()
    with replacing(path) as staging:
        figure.savefig(staging, dpi=110, format="png")
    plt.close(figure)


def plot_thresholds(report: EvaluationReport, path: Path, *, title: str) -> None:
    """Coverage (the share of images at or over the threshold: not marked low_confidence) and the accuracy of
    those images, for every threshold from 0 to 1."""
    figure, axis = plt.subplots(figsize=(7, 4.5))
    points = report.thresholds
    axis.plot([p.threshold for p in points], [p.coverage for p in points], color="tab:blue", label="coverage")
    answered = [(p.threshold, p.accuracy) for p in points if p.accuracy is not None]
    axis.plot(
        [threshold for threshold, _ in answered],
        [accuracy for _, accuracy in answered],
        color="tab:green",
        label="accuracy of the covered images",
    )
    axis.set_xlabel("confidence threshold (IMGCLS_CONFIDENCE_THRESHOLDS)")
    axis.set_ylabel("share")
    axis.set_xlim(0, 1)
    axis.set_ylim(0, 1.02)
    axis.grid(alpha=0.3)
    axis.legend(loc="lower left")
    axis.set_title(f"{title} · {report.images} images")
    figure.tight_layout()
    with replacing(path) as staging:
        figure.savefig(staging, dpi=110, format="png")
    plt.close(figure)
