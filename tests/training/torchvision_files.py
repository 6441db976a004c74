"""Weights files shaped like torchvision's downloads, made here: a randomly initialised torchvision model
saved with ``torch.save`` under ``<arch>-<first 8 hex digits of its sha256>.pth``.

Like a trained network's, its BatchNorm statistics are those of its own activations (measured on
normalised random images); left at their initial 0 and 1, a deep random network's activations grow
layer after layer in eval mode, and a short fine-tune could not bring the statistics back in time.
"""

import hashlib
from pathlib import Path

import torch
from torch import nn
from torchvision import models


def torchvision_file(folder: Path, architecture: str, *, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    model = getattr(models, architecture)()  # torchvision's own builder, 1000 classes, random weights
    measure_batchnorm(model)
    folder.mkdir(parents=True, exist_ok=True)
    plain = folder / f"{architecture}.pth"
    torch.save(model.state_dict(), plain)
    digest = hashlib.sha256(plain.read_bytes()).hexdigest()
    return plain.rename(folder / f"{architecture}-{digest[:8]}.pth")


def measure_batchnorm(model: nn.Module) -> None:
    """Running mean and variance of every BatchNorm set to its input's on 16 random 64 px images."""
    norms = [module for module in model.modules() if isinstance(module, nn.modules.batchnorm._BatchNorm)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average over the batches below (momentum is not saved)
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.randn(8, 3, 64, 64))


def imported_base(root: Path, architecture: str, downloads: Path) -> str:
    """``imgcls models import-torchvision`` of a file made by ``torchvision_file``: the published name."""
    from training.import_torchvision import import_torchvision

    weights = torchvision_file(downloads, architecture)
    return import_torchvision(architecture, weights, repository_root=root, command="test").name
