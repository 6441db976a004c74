"""Test-time augmentation baked into the exported graph: ``--tta flip``.

``FlipAveraged(model)`` returns the mean of the logits of each image and of its horizontal mirror. Logits,
not probabilities, are averaged so that the output is still logits: the manifest's contract (``scores``
"logits", probabilities = softmax(logits / temperature)) holds, and temperature scaling, fitted on these
averaged logits, still calibrates them. (Averaging probabilities would need a softmax in the graph, served
uncalibrated.) Averaged logits are the geometric mean of the two softmax distributions, renormalized.

Only right when a mirrored image has the same label (clothes, most photos); not for digits or text. It is
the user's choice, off by default; the model costs two forward passes per image at serving time.
"""

from typing import Literal

import torch
from torch import nn

TestTimeAugmentation = Literal["none", "flip"]


class FlipAveraged(nn.Module):
    """``(model(x) + model(flip(x))) / 2`` over the width axis of (batch, C, H, W) inputs."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, classes)
        return (self.model(images) + self.model(torch.flip(images, dims=(3,)))) / 2


def with_tta(model: nn.Module, tta: TestTimeAugmentation) -> nn.Module:
    """``model`` itself for "none", else wrapped so that every forward pass averages over the augmentation."""
    return FlipAveraged(model) if tta == "flip" else model


def tta_doubt(tta: TestTimeAugmentation, *, augment: str, flip_ok: bool) -> str | None:
    """Why ``tta`` may cost accuracy for this run, or None. Not a refusal: the user knows the labels best.

    A network trained without mirrored images (augment "none") has not learned them, even where mirroring
    keeps the label: on Fashion-MNIST every shoe faces left, and a mirrored ankle boot is not recognized.
    """
    if tta != "flip":
        return None
    if not flip_ok:
        return "--tta flip on a dataset whose classes a mirror can change (digits): see test_accuracy_without_tta"
    if augment == "none":
        return (
            "--tta flip with augment none: the network never saw a mirrored image; train with --augment crop-flip "
            "(or a photo policy), or compare test_accuracy_without_tta"
        )
    return None
