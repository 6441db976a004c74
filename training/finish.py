"""The end of a completed run: calibrate, test, draw, export, and publish.

Writes into the run folder ``model.onnx`` (checked against torch inside the export), ``explain.onnx``
for architectures with class activation maps (training/explain_export.py, checked the same way), ``weights.pt``
(the state_dict, for fine-tuning), the evaluation report of the test set (``report.json`` and its
pictures: training/report_files.py), ``result.json`` (what the manifest will say), the curves, and then
publishes the folder's files as a new version through ``training.publish``.
"""

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import torch
from torch import nn

from service.evaluation.report import evaluation_report
from service.repository import VersionRef
from service.repository.run_folder import EarlyStop, ExportCheck, FinishedRun, RunFolder, SkippedFile
from service.version import code_version
from training.assemble import uses_channels_last
from training.batches import EVAL_BATCH_SIZE, eval_batches
from training.calibration import calibrated_probabilities, expected_calibration_error, fit_temperature
from training.config import TrainConfig
from training.data import DatasetBundle
from training.engine import evaluate
from training.explain_export import explainable, export_explain
from training.export import export_onnx
from training.publish import publish_run
from training.report_files import write_report_files
from training.reporting import plot_curves
from training.tta import with_tta


def finish_run(
    model: nn.Module,
    *,
    average: nn.Module | None = None,
    folder: RunFolder,
    config: TrainConfig,
    name: str,
    data: DatasetBundle,
    val: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    history: list[dict[str, Any]],
    best_epoch: int,
    early_stop: EarlyStop | None,
    device: torch.device,
    repository_root: Path,
    redis_url: str | None,
) -> tuple[dict[str, float], VersionRef | None]:
    """Returns the test metrics and, when ``config.publish``, the published version (servers listening on
    ``redis_url`` are told). ``model`` holds the weights of epoch ``best_epoch`` of ``history`` (the one
    kept); ``early_stop`` says why the run ended early, if it did.

    ``average`` (``--ema``): the moving average of the weights at that epoch; then it is what is calibrated,
    tested, exported and published, and ``metrics["raw_test_accuracy"]`` is the trained weights' accuracy.
    With ``config.tta`` "flip" the exported graph, and so every figure of the exported model, averages each
    image with its mirror (training/tta.py); ``metrics["test_accuracy_without_tta"]`` says what it adds.
    """
    plain_loss = nn.CrossEntropyLoss()
    amp = device.type == "cuda"
    kept = average if average is not None else model  # the weights exported
    exported = with_tta(kept, config.tta)

    def logits_of(
        images: torch.Tensor, labels: torch.Tensor, network: nn.Module = exported
    ) -> tuple[torch.Tensor, torch.Tensor]:
        batches = eval_batches(
            images,
            labels,
            batch_size=EVAL_BATCH_SIZE,
            preprocessing=data.preprocessing,
            device=device,
            channels_last=uses_channels_last(config),
        )
        result = evaluate(network, batches, loss_fn=plain_loss, device=device, amp=amp)
        return result.logits, result.labels

    def accuracy_of(network: nn.Module) -> float:
        logits, labels = logits_of(*test, network=network)
        return round(float((logits.argmax(dim=1) == labels).float().mean()), 5)

    val_logits, val_labels = logits_of(*val)
    temperature = fit_temperature(val_logits, val_labels)
    test_logits, test_labels = logits_of(*test)
    report = evaluation_report(
        calibrated_probabilities(test_logits, temperature).double().numpy(),
        test_labels.numpy(),
        data.labels,
        dataset=data.name,
    )
    metrics: dict[str, float] = {
        "test_accuracy": report.accuracy,
        "test_loss": round(float(plain_loss(test_logits / temperature, test_labels)), 5),
        "ece": report.ece,
        "ece_uncalibrated": round(
            expected_calibration_error(calibrated_probabilities(test_logits, 1.0), test_labels), 5
        ),
        "test_images": float(len(test_labels)),
        "epochs": float(history[-1]["epoch"]) if history else 0.0,
        "best_epoch": float(best_epoch),
    }
    if len(val_labels):
        metrics["val_accuracy"] = round(float((val_logits.argmax(dim=1) == val_labels).float().mean()), 5)
    if average is not None:
        metrics["raw_test_accuracy"] = accuracy_of(with_tta(model, config.tta))
    if config.tta != "none":
        metrics["test_accuracy_without_tta"] = accuracy_of(kept)
    for row in report.classes:
        metrics[f"accuracy/{row.label}"] = row.recall

    title = f"{name} · {config.model} · test accuracy {metrics['test_accuracy']:.4f}"
    plot_curves(
        history, folder.curves, title=title, run_dir=folder.path, augmented=config.augment not in (None, "none")
    )
    write_report_files(report, folder.path, title=f"{name} · test set")

    model_cpu = kept.to("cpu").to(memory_format=torch.contiguous_format).float().eval()
    torch.save(model_cpu.state_dict(), folder.weights)
    sample_batch = next(
        eval_batches(*test, batch_size=8, preprocessing=data.preprocessing, device=torch.device("cpu"))
    )[0]
    input_shape = (data.preprocessing.channels, *data.preprocessing.input_size)
    export = export_onnx(
        with_tta(model_cpu, config.tta),
        folder.model,
        input_shape=input_shape,
        sample=sample_batch,
        metadata={
            "labels": json.dumps(list(data.labels)),
            "preprocessing": json.dumps(msgspec.to_builtins(data.preprocessing)),
            "temperature": repr(temperature),
            "metrics": json.dumps(metrics),
            "config": json.dumps(config.to_dict()),
            "code_version": code_version(),
        },
    )
    explain = (
        export_explain(
            model_cpu, folder.explain, architecture=config.model, input_shape=input_shape, sample=sample_batch
        )
        if explainable(config.model)
        else None
    )
    folder.write_result(
        FinishedRun(
            name=name,
            architecture=config.model,
            labels=data.labels,
            preprocessing=data.preprocessing,
            temperature=temperature,
            metrics=metrics,
            dataset=data.name,
            skipped_files=tuple(SkippedFile(path, reason) for path, reason in data.skipped),
            config=config.to_dict(),
            export=ExportCheck(export.opset, export.max_abs_diff),
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            code_version=code_version(),
            early_stop=early_stop,
            explain=explain,
        )
    )
    published = (
        publish_run(folder.path, repository_root=repository_root, redis_url=redis_url) if config.publish else None
    )
    return metrics, published
