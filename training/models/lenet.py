"""``lenet5``: LeCun et al. (1998), "Gradient-based learning applied to document recognition".

The layout is the paper's: C1 conv(6, 5x5) - S2 pool - C3 conv(16, 5x5) - S4 pool - C5 conv(120, 5x5) -
F6 fc(84) - output fc(classes). Three deliberate modernisations, so it trains well with today's recipes:

- ReLU and 2x2 max-pooling, where the paper used scaled tanh and trainable average "subsampling";
- C3 connects to all 6 maps of S2 (the paper used a hand-made partial connection table);
- a linear output layer with cross-entropy, where the paper used Euclidean RBF units.

Sizes: the paper fed 32x32 images (28x28 MNIST digits centred in a 32x32 field) so that C5 sees exactly
5x5 and outputs 1x1. ``forward`` does the same: it zero-pads any input of at most 32x32 px to 32x32,
centred. For 28x28 input that is exactly a first conv with padding 2; for 32x32 it is the paper's network
unchanged. Inputs larger than 32 px are refused rather than silently cropped or pooled.
"""

import torch
import torch.nn.functional as F
from torch import nn

LENET_INPUT_SIZE = 32  # the field the paper's C5 is sized for: 32 -> 28 -> 14 -> 10 -> 5 -> 1


class LeNet5(nn.Module):
    def __init__(self, *, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, kernel_size=5),  # C1: (B, 6, 28, 28)
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),  # S2: (B, 6, 14, 14)
            nn.Conv2d(6, 16, kernel_size=5),  # C3: (B, 16, 10, 10)
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),  # S4: (B, 16, 5, 5)
            nn.Conv2d(16, 120, kernel_size=5),  # C5: (B, 120, 1, 1)
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(120, 84),  # F6
            nn.ReLU(inplace=True),
            nn.Linear(84, num_classes),
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) with H, W <= 32 -> (B, classes)
        height, width = images.shape[-2:]
        if height > LENET_INPUT_SIZE or width > LENET_INPUT_SIZE:
            raise ValueError(
                f"lenet5 takes images of at most {LENET_INPUT_SIZE}x{LENET_INPUT_SIZE} px, "
                f"got {height}x{width}; resize the input or pick another model"
            )
        pad_h, pad_w = LENET_INPUT_SIZE - height, LENET_INPUT_SIZE - width
        # (left, right, top, bottom); shapes are static at export time, so this becomes one ONNX Pad.
        images = F.pad(images, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))
        return self.classifier(self.features(images))
