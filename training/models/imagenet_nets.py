"""``mobilenet_v3_small``, ``mobilenet_v3_large``, ``efficientnet_b0``, ``convnext_tiny``: torchvision's
ImageNet networks, built with random weights (never downloaded) for any number of classes.

They are 224 px networks: they start from ImageNet weights (``imgcls models import-torchvision``,
``imgcls train --init-weights``) and train on photos. Parameter names are torchvision's, so a
torchvision weights file loads into a model built here with 3 input channels. Other input channels
replace the first conv (same width, kernel and stride; fresh weights), as ``build_resnet`` does.

Smallest input: every network halves the image five times (convnext_tiny: a 4x4 stride-4 stem, then
three 2x2 stride-2 downsamplings without padding, so it needs at least 32 px; the others take 28).
"""

from collections.abc import Callable

from torch import nn
from torchvision import models

# name -> (torchvision builder, dotted name of the first conv)
IMAGENET_NETS: dict[str, tuple[Callable[..., nn.Module], str]] = {
    "mobilenet_v3_small": (models.mobilenet_v3_small, "features.0.0"),
    "mobilenet_v3_large": (models.mobilenet_v3_large, "features.0.0"),
    "efficientnet_b0": (models.efficientnet_b0, "features.0.0"),
    "convnext_tiny": (models.convnext_tiny, "features.0.0"),
}


def build_imagenet_net(name: str, *, in_channels: int, num_classes: int) -> nn.Module:
    builder, first_conv = IMAGENET_NETS[name]
    model = builder(num_classes=num_classes)  # weights=None: random, nothing downloaded
    if in_channels != 3:
        old = model.get_submodule(first_conv)
        assert isinstance(old, nn.Conv2d)
        new = nn.Conv2d(
            in_channels,
            old.out_channels,
            kernel_size=old.kernel_size,  # type: ignore[arg-type]  # a tuple, as Conv2d accepts
            stride=old.stride,  # type: ignore[arg-type]
            padding=old.padding,  # type: ignore[arg-type]
            bias=old.bias is not None,
        )
        parent, _, attribute = first_conv.rpartition(".")
        setattr(model.get_submodule(parent), attribute, new)
    return model
