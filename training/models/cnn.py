"""``cnn``: a BatchNorm CNN for small (28-32 px) images, built to train fast on a CPU.

Three conv stages, each halving the resolution; stage widths and conv counts are data. The default
(``CNN_WIDTHS``) is the recipe that reaches 92 % on Fashion-MNIST in under three minutes on two cores
(docs/benchmarks.md): a cheap 24-channel stem at full resolution, the width where the pixels are few.
"""

from collections.abc import Sequence

import torch
from torch import nn

CNN_WIDTHS: tuple[int, ...] = (32, 64, 128)


def conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class CNN(nn.Module):
    def __init__(
        self, *, in_channels: int, num_classes: int, widths: Sequence[int] = CNN_WIDTHS, dropout: float = 0.0
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for width in widths:
            layers += [conv_bn_relu(channels, width), nn.MaxPool2d(2)]
            channels = width
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(channels, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, classes)
        features = self.pool(self.features(images)).flatten(1)
        return self.head(self.dropout(features))
