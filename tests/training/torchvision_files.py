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


def imported_base(root: Path, architecture: str, downloads: Path) -> str:
    """``imgcls models import-torchvision`` of a file made by ``torchvision_file``: the published name."""
    from training.import_torchvision import import_torchvision

    weights = torchvision_file(downloads, architecture)
    return import_torchvision(architecture, weights, repository_root=root, command="test").name


def colour_photos(folder: Path, per_class: int, *, seed: int = 0) -> Path:
    """An ImageFolder of three colour classes: a red, green or blue disc or square on a random grey-ish
    background, in sizes from 48 to 160 px; easy enough to learn in an epoch or two from any start."""
    import numpy as np
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    colours = {"red": (210, 40, 40), "green": (40, 190, 60), "blue": (40, 60, 210)}
    for name, colour in colours.items():
        (folder / name).mkdir(parents=True)
        for index in range(per_class):
            width, height = (int(size) for size in rng.integers(48, 161, 2))
            background = tuple(int(value) for value in rng.integers(90, 170, 3))
            photo = Image.new("RGB", (width, height), background)
            box = (width // 6, height // 6, width - width // 6, height - height // 6)
            draw = ImageDraw.Draw(photo)
            (draw.ellipse if index % 2 else draw.rectangle)(box, fill=colour)
            photo.save(folder / name / f"{index}.png")
    return folder
