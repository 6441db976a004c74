"""``resnet_small``: the CIFAR-style ResNet of He et al. (2016, section 4.2) for 28-32 px images.

Unlike ImageNet ResNets (a 7x7 stride-2 stem and a max-pool that throw away 3/4 of a 28 px image's
resolution before the first block), this one keeps full resolution in a 3x3 stem and halves it only at
the start of each later stage: 28 -> 28 -> 14 -> 7, then global average pooling.

The default ``RESNET_SMALL_STAGES`` is ResNet-20 (3 stages x 3 BasicBlocks x 2 convs + stem + head):
0.27 M parameters and about 4x the multiply-adds of ``cnn`` per image. Where CPU time is short, pass
shallower stages, e.g. ``((16, 1), (32, 1), (64, 1))`` (ResNet-8). The blocks are torchvision's
``BasicBlock``; shortcuts that change shape use a 1x1 conv + BatchNorm ("option B").
"""

from collections.abc import Sequence

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock

# (width, blocks) per stage; every stage after the first starts with a stride-2 block.
RESNET_SMALL_STAGES: tuple[tuple[int, int], ...] = ((16, 3), (32, 3), (64, 3))


def _stage(in_channels: int, width: int, blocks: int, stride: int) -> nn.Sequential:
    downsample = None
    if stride != 1 or in_channels != width:
        downsample = nn.Sequential(
            nn.Conv2d(in_channels, width, kernel_size=1, stride=stride, bias=False), nn.BatchNorm2d(width)
        )
    layers = [BasicBlock(in_channels, width, stride=stride, downsample=downsample)]
    layers += [BasicBlock(width, width) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


class ResNetSmall(nn.Module):
    def __init__(
        self,
        *,
        in_channels: int,
        num_classes: int,
        stages: Sequence[tuple[int, int]] = RESNET_SMALL_STAGES,
    ) -> None:
        super().__init__()
        if not stages:
            raise ValueError("resnet_small needs at least one (width, blocks) stage")
        stem_width = stages[0][0]
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, stem_width, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(stem_width),
            nn.ReLU(inplace=True),
        )
        channels = stem_width
        layers = []
        for index, (width, blocks) in enumerate(stages):
            layers.append(_stage(channels, width, blocks, stride=1 if index == 0 else 2))
            channels = width
        self.stages = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)

        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        # Each residual branch starts as zero, so every block starts as the identity (Goyal et al., 2017):
        # trains faster and tolerates larger learning rates.
        for module in self.modules():
            if isinstance(module, BasicBlock):
                nn.init.zeros_(module.bn2.weight)

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, classes)
        features = self.stages(self.stem(images))  # (B, widths[-1], H / 2^(stages-1), W / 2^(stages-1))
        return self.fc(self.pool(features).flatten(1))
