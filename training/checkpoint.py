"""Checkpoints: everything needed to resume a run exactly, and to know what made it.

A checkpoint is a dict of plain types and tensors, so it loads with ``torch.load(weights_only=True)``
(no pickled code runs on load). It is written to a temporary file and renamed into place, so an
interrupted save never leaves half a checkpoint behind.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from service.files import replacing
from service.version import code_version
from training.errors import CheckpointError

CHECKPOINT_FORMAT = 1


@dataclass(frozen=True)
class Checkpoint:
    epoch: int  # epochs completed
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    config: dict[str, Any]  # the resolved TrainConfig
    labels: list[str]
    preprocessing: dict[str, Any]
    history: list[dict[str, Any]]  # one metrics dict per completed epoch
    best_val_accuracy: float
    best_epoch: int
    code_version: str
    ema: dict[str, Any] | None = None  # --ema: WeightAverage.state_dict() (averaged tensors, steps averaged)


def save_checkpoint(path: Path, checkpoint: Checkpoint) -> None:
    payload = {
        "format": CHECKPOINT_FORMAT,
        "epoch": checkpoint.epoch,
        "model": checkpoint.model,
        "optimizer": checkpoint.optimizer,
        "scheduler": checkpoint.scheduler,
        "config": checkpoint.config,
        "labels": checkpoint.labels,
        "preprocessing": checkpoint.preprocessing,
        "history": checkpoint.history,
        "best_val_accuracy": checkpoint.best_val_accuracy,
        "best_epoch": checkpoint.best_epoch,
        "code_version": checkpoint.code_version or code_version(),
        "ema": checkpoint.ema,
    }
    with replacing(path) as staging:
        torch.save(payload, staging)


def load_checkpoint(path: Path) -> Checkpoint:
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or foreign files
        raise CheckpointError(f"{path} is not a readable imgcls checkpoint: {str(exc).splitlines()[0]}") from exc
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not an imgcls checkpoint (format {CHECKPOINT_FORMAT})")
    return Checkpoint(
        epoch=payload["epoch"],
        model=payload["model"],
        optimizer=payload["optimizer"],
        scheduler=payload["scheduler"],
        config=payload["config"],
        labels=payload["labels"],
        preprocessing=payload["preprocessing"],
        history=payload["history"],
        best_val_accuracy=payload["best_val_accuracy"],
        best_epoch=payload["best_epoch"],
        code_version=payload["code_version"],
        ema=payload.get("ema"),
    )
