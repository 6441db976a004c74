"""Explanations tested for truth, not only shape: on images whose class is decided by one object at a known
place (a square, a cross or a ring, drawn anywhere on noise), the peak of the class activation map that
onnxruntime computes from a freshly trained ``cnn``'s explain graph falls on the object in at least 90 %
of held-out images."""

from pathlib import Path

import numpy as np
import torch
from torch import nn

from service.inference.explain import ExplainSession
from service.inference.heatmaps import peak
from training.explain_export import export_explain
from training.models import create_model

SIZE = 32  # the cnn halves it three times: a 4x4 map of 8 px cells
SIDE = 14  # every object fits a 14x14 box: about two cells of the map
SHAPES = ("square", "cross", "ring")
SEED = 0


def draw(shape: str, rng: np.random.Generator) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """A (SIZE, SIZE) uint8 image of ``shape`` at a random place on noise, and its box (top, left, bottom, right)."""
    image = rng.integers(0, 60, (SIZE, SIZE)).astype(np.uint8)
    top, left = (int(v) for v in rng.integers(0, SIZE - SIDE + 1, 2))
    rows, columns = np.mgrid[0:SIDE, 0:SIDE]
    centre = (SIDE - 1) / 2
    if shape == "square":
        mask = np.ones((SIDE, SIDE), dtype=bool)
    elif shape == "cross":
        mask = (np.abs(rows - centre) < 2) | (np.abs(columns - centre) < 2)
    else:
        radius = np.hypot(rows - centre, columns - centre)
        mask = (radius > SIDE / 2 - 3) & (radius <= SIDE / 2)
    patch = image[top : top + SIDE, left : left + SIDE]
    patch[mask] = rng.integers(180, 256, int(mask.sum()))
    return image, (top, left, top + SIDE - 1, left + SIDE - 1)


def dataset(count: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor, list[tuple[int, int, int, int]]]:
    """Normalized (count, 1, SIZE, SIZE) images, their classes and the objects' boxes."""
    labels = rng.integers(0, len(SHAPES), count)
    drawn = [draw(SHAPES[label], rng) for label in labels]
    pixels = np.stack([image for image, _ in drawn]).astype(np.float32) / 255.0
    images = torch.from_numpy((pixels[:, None] - 0.5) / 0.5)
    return images, torch.from_numpy(labels), [box for _, box in drawn]


def trained_cnn(images: torch.Tensor, labels: torch.Tensor) -> nn.Module:
    torch.manual_seed(SEED)
    model = create_model("cnn", in_channels=1, num_classes=len(SHAPES))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.003)
    loss = nn.CrossEntropyLoss()
    model.train()
    generator = torch.Generator().manual_seed(SEED)
    for _ in range(2):  # epochs
        for batch in torch.randperm(len(images), generator=generator).split(64):
            optimizer.zero_grad()
            loss(model(images[batch]), labels[batch]).backward()
            optimizer.step()
    return model.eval()


def test_the_map_peaks_on_the_object_that_decides_the_class(tmp_path: Path) -> None:
    torch.set_num_threads(2)
    rng = np.random.default_rng(SEED)
    train_images, train_labels, _ = dataset(1200, rng)
    test_images, test_labels, boxes = dataset(200, rng)
    model = trained_cnn(train_images, train_labels)

    export_explain(model, tmp_path / "explain.onnx", architecture="cnn", input_shape=(1, SIZE, SIZE))
    session = ExplainSession(tmp_path / "explain.onnx", providers=["CPUExecutionProvider"], intra_op_threads=2)
    logits, maps = session.run(test_images.numpy())
    predicted = logits.argmax(axis=1)
    accuracy = float((predicted == test_labels.numpy()).mean())
    assert accuracy >= 0.9, f"the cnn learned too little to explain ({accuracy:.2f})"

    hits = 0
    for image_maps, label, (top, left, bottom, right) in zip(maps, test_labels.tolist(), boxes, strict=True):
        y, x = peak(image_maps[label], (SIZE, SIZE))
        hits += top <= y <= bottom and left <= x <= right
    assert hits / len(boxes) >= 0.9, f"the peak fell on the object in {hits} of {len(boxes)} images"
