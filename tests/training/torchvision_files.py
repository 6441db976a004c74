"""Weights files shaped like torchvision's downloads, made here: a randomly initialised torchvision model
saved with ``torch.save`` under ``<arch>-<first 8 hex digits of its sha256>.pth``."""

import hashlib
from pathlib import Path

import torch
from torchvision import models


def torchvision_file(folder: Path, architecture: str, *, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    model = getattr(models, architecture)()  # torchvision's own builder, 1000 classes, random weights
    folder.mkdir(parents=True, exist_ok=True)
    plain = folder / f"{architecture}.pth"
    torch.save(model.state_dict(), plain)
    digest = hashlib.sha256(plain.read_bytes()).hexdigest()
    return plain.rename(folder / f"{architecture}-{digest[:8]}.pth")
