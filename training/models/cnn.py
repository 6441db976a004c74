"""``cnn``: a BatchNorm CNN for small (28-32 px) images, built to train fast on a CPU.

Stages of 3x3 convolutions; the first conv of each stage is followed by a 2x2 max-pool *before* its
BatchNorm and ReLU (as in airbench), so normalization and activation run on a quarter of the pixels.
The widths are data: ``CNN_STAGES`` is the default recipe's network, which reaches 92 % on
Fashion-MNIST in under three minutes on two CPU cores (docs/benchmarks.md): a narrow stem at full
resolution, the width where the pixels are few. A global max-pool and one linear layer classify.
"""

from collections.abc import Sequence

import torch
from torch import nn

CNN_STAGES: tuple[tuple[int, ...], ...] = ((24,), (48, 48), (96, 96))  # (B,1,28,28) -> 14 -> 7 -> 3
# About twice the compute: the network of the best CPU recipe (longer training with augmentation).
CNN_WIDE_STAGES: tuple[tuple[int, ...], ...] = ((32, 32), (64, 64), (128, 128))


class CNN(nn.Module):
    def __init__(
        self,
        *,
        in_channels: int,
        num_classes: int,
        stages: Sequence[Sequence[int]] = CNN_STAGES,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for stage in stages:
            for index, width in enumerate(stage):
                layers.append(nn.Conv2d(channels, width, kernel_size=3, padding=1, bias=False))
                if index == 0:
                    layers.append(nn.MaxPool2d(2))
                layers += [nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
                channels = width
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(channels, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, classes)
        features = self.pool(self.features(images)).flatten(1)
        return self.head(self.dropout(features))
