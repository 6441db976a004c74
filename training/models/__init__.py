"""Image classifiers by name: ``create_model("resnet_small", in_channels=1, num_classes=10)``.

Names: ``model_names()``; an unknown name raises ``UnknownModel``. ``load_weights`` loads a
``weights.pt`` (a plain state_dict) strictly, with a ``CheckpointError`` naming both architectures when
the file came from another one. ``head_of(name)`` names a model's classifier module (fine-tuning
replaces it when the labels change).
"""

from training.models.registry import HEADS, MODELS, create_model, head_of, model_names
from training.models.resnet import RESNETS, build_resnet, describe_architecture, load_weights

__all__ = [
    "HEADS",
    "MODELS",
    "RESNETS",
    "build_resnet",
    "create_model",
    "describe_architecture",
    "head_of",
    "load_weights",
    "model_names",
]
