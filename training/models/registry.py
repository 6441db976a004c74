"""The model registry: a name in, a freshly initialised ``nn.Module`` out, or ``UnknownModel``.

Every builder takes the same two keywords, ``in_channels`` and ``num_classes``; anything else a
model can vary is a keyword of its own constructor with a default, not of the registry. Tests in
``tests/training/models`` build, run and export every name registered here.

``HEADS`` names each model's classifier: the one module whose output has ``num_classes`` values.
Fine-tuning replaces it when the label set changes and treats everything else as the backbone.
"""

from functools import partial
from typing import Protocol

from torch import nn

from training.errors import InvalidHyperparameter, UnknownModel
from training.models.cnn import CNN, CNN_WIDE_STAGES
from training.models.imagenet_nets import IMAGENET_NETS, build_imagenet_net
from training.models.lenet import LeNet5
from training.models.resnet import RESNETS, build_resnet
from training.models.resnet_small import ResNetSmall


class ModelBuilder(Protocol):
    def __call__(self, *, in_channels: int, num_classes: int) -> nn.Module: ...


# Insertion order is the order ``model_names()`` reports: smallest and fastest first.
MODELS: dict[str, ModelBuilder] = {
    "lenet5": LeNet5,
    "cnn": CNN,
    "cnn_wide": partial(CNN, stages=CNN_WIDE_STAGES),
    "resnet_small": ResNetSmall,
    **{name: partial(build_resnet, name) for name in RESNETS},
    **{name: partial(build_imagenet_net, name) for name in IMAGENET_NETS},
}


# name -> dotted name of the classifier module (a Linear: weight (classes, features), bias (classes,)).
HEADS: dict[str, str] = {
    "lenet5": "classifier.3",  # the output layer after F6; F6 stays in the backbone
    "cnn": "head",
    "cnn_wide": "head",
    "resnet_small": "fc",
    **{name: "fc" for name in RESNETS},  # torchvision's name
    "mobilenet_v3_small": "classifier.3",  # after Linear(576, 1024), Hardswish, Dropout: those stay
    "mobilenet_v3_large": "classifier.3",
    "efficientnet_b0": "classifier.1",  # after the Dropout
    "convnext_tiny": "classifier.2",  # after LayerNorm2d and Flatten
}


def model_names() -> list[str]:
    return list(MODELS)


def create_model(name: str, *, in_channels: int, num_classes: int) -> nn.Module:
    """Build model ``name`` with random weights (nothing is downloaded).

    Raises ``UnknownModel`` (listing the known names) and ``InvalidHyperparameter`` for fewer than one
    input channel or class.
    """
    try:
        builder = MODELS[name]
    except KeyError:
        raise UnknownModel(name, MODELS) from None
    if in_channels < 1 or num_classes < 1:
        raise InvalidHyperparameter(
            f"{name}: in_channels and num_classes must be at least 1, got {in_channels} and {num_classes}"
        )
    return builder(in_channels=in_channels, num_classes=num_classes)


def head_of(name: str) -> str:
    """The dotted module name of model ``name``'s classifier (``"head"``, ``"fc"``, ``"classifier.3"``)."""
    try:
        return HEADS[name]
    except KeyError:
        raise UnknownModel(name, MODELS) from None
