"""The training config: typed, frozen, validated, and saved with every checkpoint and manifest.

Values come from three layers, later ones winning: these defaults, a YAML or TOML file
(``--config``), and command-line options. The defaults are the default recipe: the one the README's
first command trains (>= 92 % Fashion-MNIST test accuracy in under three minutes on two CPU cores).
"""

import tomllib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError

from service.jobs.hyperparameters import (
    BatchSize,
    Epochs,
    Hyperparameters,
    LearningRate,
    LrPolicy,
    Optimizer,
    ValFraction,
    describe_problems,
)
from training.errors import TrainingError


class ConfigError(TrainingError):
    """A config file or option that cannot be used; the message names the field."""


class TrainConfig(Hyperparameters):
    """``imgcls train``'s config: the shared hyperparameters (service/jobs/hyperparameters.py: names, types,
    ranges) with this recipe's defaults, and what only a run from the command line chooses."""

    # ---- the default recipe's values for the shared hyperparameters
    epochs: Epochs = 5
    batch_size: BatchSize = 256
    optimizer: Optimizer = "nesterov"
    learning_rate: LearningRate = 0.2  # peak rate for batch 256
    lr_policy: LrPolicy = "onecycle"
    val_fraction: ValFraction = 0.05
    # augment unset: the dataset's default, "none" for Fashion-MNIST (in the 5-epoch default recipe any
    # augmentation costs accuracy; crop-flip pays in longer runs) and digits, "photo" for folders of photos;
    # label_smoothing 0.1, no early stopping: the shared defaults

    # ---- what to train
    model: str = Field(default="cnn", description="a name from the model registry (imgcls train --help lists them)")
    dataset: str = Field(
        default="fashion-mnist",
        description='"fashion-mnist", "digits" or "folder:<path>" (one folder per class)',
    )
    name: str | None = Field(default=None, description="name to publish under; default: the dataset's name")
    image_size: int | None = Field(default=None, ge=8, description="folder datasets only: network input side")
    init_weights: str | None = Field(
        default=None,
        description="start from this state_dict file (e.g. torchvision's resnet18-f37072fd.pth) instead of random "
        "weights; a head for another number of classes is left out",
    )

    # ---- data
    train_subset: int | None = Field(default=None, ge=1, description="use only this many training images (smoke runs)")
    test_subset: int | None = Field(default=None, ge=1, description="evaluate on only this many test images")
    crop_padding: int = Field(
        default=2, ge=0, description="augment crop-flip: pixels of zero padding for the random crop"
    )

    # ---- parameter updates
    warmup_iters: int = Field(default=0, ge=0, description="linear warmup in front of the policy")
    lr_multipliers: dict[str, float] = Field(default_factory=dict, description="module-name pattern -> rate multiplier")
    grad_clip: float | None = Field(default=None, gt=0.0, description="max global gradient norm")
    ema: float | None = Field(
        default=None,
        gt=0.0,
        lt=1.0,
        description="keep an exponential moving average of the weights with this decay (e.g. 0.999), validate "
        "and test it beside the trained weights, and export it (training/ema.py)",
    )

    # ---- the exported model
    tta: Literal["none", "flip"] = Field(
        default="none",
        description='test-time augmentation in the exported graph: "flip" averages the logits of each image and '
        "its mirror (only for labels a mirror keeps; twice the inference cost)",
    )

    # ---- control
    device: Literal["auto", "cpu", "cuda"] = Field(default="auto", description="auto: CUDA when available, else CPU")
    threads: int | None = Field(default=None, ge=1, description="CPU threads for torch; default: torch's choice")
    publish: bool = Field(default=True, description="publish the exported model into the repository at the end")


FIELDS = tuple(TrainConfig.model_fields)


def read_config_file(path: Path) -> dict[str, Any]:
    """A YAML (.yaml/.yml) or TOML (.toml) file of TrainConfig fields."""
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    text = path.read_text()
    try:
        if path.suffix == ".toml":
            values: Any = tomllib.loads(text)
        elif path.suffix in (".yaml", ".yml", ".json"):
            values = yaml.safe_load(text) or {}
        else:
            raise ConfigError(f"config file {path}: use a .yaml, .yml or .toml file")
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"config file {path} is not valid: {exc}".splitlines()[0]) from exc
    if not isinstance(values, dict):
        raise ConfigError(f"config file {path} must hold a mapping of option names to values")
    return {str(k).replace("-", "_"): v for k, v in values.items()}


def build_config(*layers: dict[str, Any]) -> TrainConfig:
    """Merge layers (later wins, ``None`` values are skipped) and validate into a TrainConfig."""
    merged: dict[str, Any] = {}
    for layer in layers:
        merged.update({k: v for k, v in layer.items() if v is not None})
    try:
        return TrainConfig(**merged)
    except ValidationError as exc:
        problems = describe_problems(exc, known=FIELDS, word="options")
        raise ConfigError(f"invalid training config: {problems}") from exc
