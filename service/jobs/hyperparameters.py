"""A fine-tuning job's hyperparameters: one definition for the API (which checks a submission before it is
accepted), the CLI and the worker (``training.finetune``). No torch here, so the API can import it.

Optimizer and learning-rate policy names are the training registries' names; a test holds the two lists
equal. Their *options* (``optimizer_options``, ``lr_policy_options``) are checked by the worker, which has
the registries: a bad option fails the job with the registry's message.
"""

import itertools
import json
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from service.jobs.errors import InvalidHyperparameters

OPTIMIZERS = (
    "sgd",
    "momentum",
    "nesterov",
    "adagrad",
    "adadelta",
    "rmsprop",
    "rprop",
    "adam",
    "adamw",
    "ftrl",
    "lbfgs",
)
LR_POLICIES = ("fixed", "step", "multistep", "exp", "inv", "poly", "sigmoid", "cosine", "onecycle")
SWEEPABLE = ("learning_rate", "optimizer", "lr_policy", "batch_size")  # a list of values: one trial per combination


class FineTuneConfig(BaseModel):
    """A job's hyperparameters, by the names ``imgcls train`` uses; ``None`` ones are resolved at the start.

    The defaults are a recipe for a few hundred small images on a CPU (docs/training.md): 8 epochs of
    AdamW under a cosine decay, the new head alone in the first one, then everything, the backbone at 0.3
    times the head's rate. On 600 Fashion-MNIST images of three classes the base never saw, that is about
    5 seconds of training on two cores and 97 % accuracy (benchmarks/finetune.py).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    epochs: int = Field(default=8, ge=1, le=1000, description="passes over the training images")
    batch_size: int = Field(
        default=32, ge=1, le=4096, description="images per update: small, so a small set still gives steps"
    )
    optimizer: str = Field(default="adamw", description=f"one of {', '.join(OPTIMIZERS)}")
    optimizer_options: dict[str, Any] = Field(default_factory=dict, description="resolved: every default filled in")
    learning_rate: float = Field(default=0.003, gt=0.0, le=10.0, description="the head's peak rate")
    lr_policy: str = Field(
        default="cosine", description=f"one of {', '.join(LR_POLICIES)}; cosine starts at the full rate, so the "
        "head learns in the frozen first epoch (onecycle's warm-up would spend it at a 25th of the rate)"
    )  # fmt: skip
    lr_policy_options: dict[str, Any] = Field(default_factory=dict, description="resolved: every default filled in")
    weight_decay: float | None = Field(default=None, ge=0.0, le=1.0, description="5e-4 (0 for rprop, lbfgs, ftrl)")
    freeze_backbone_epochs: int = Field(
        default=1, ge=0, description="epochs at the start in which only the head learns (the new head settles "
        "before its gradients reach the pretrained features)"
    )  # fmt: skip
    backbone_lr_multiplier: float = Field(
        default=0.3, gt=0.0, le=10.0, description="backbone rate = learning_rate x this, once it is unfrozen"
    )
    augment: bool = Field(default=False, description="random crops and flips, as imgcls train --augment")
    val_fraction: float = Field(
        default=0.1, gt=0.0, lt=1.0, description="share of the training images held out for early stopping and "
        "calibration (20 % of the dataset is held out first for the test)"
    )  # fmt: skip
    early_stopping_patience: int | None = Field(
        default=None, ge=1, description="stop after this many epochs without a better validation accuracy, and "
        "publish the best epoch's weights; unset: all epochs, the last one's weights"
    )  # fmt: skip
    seed: int = Field(default=0, ge=0, description="seeds the splits, the new head, shuffling and augmentation")

    @model_validator(mode="after")
    def _known_names_and_freeze_within_epochs(self) -> "FineTuneConfig":
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r} (known: {', '.join(OPTIMIZERS)})")
        if self.lr_policy not in LR_POLICIES:
            raise ValueError(f"unknown lr_policy {self.lr_policy!r} (known: {', '.join(LR_POLICIES)})")
        if self.freeze_backbone_epochs > self.epochs:
            raise ValueError(
                f"freeze_backbone_epochs ({self.freeze_backbone_epochs}) is more than epochs ({self.epochs}); "
                f"use at most {self.epochs} (all epochs: only the head learns)"
            )
        return self

    def to_dict(self) -> dict[str, Any]:
        return json.loads(self.model_dump_json())


def build_finetune_config(values: Mapping[str, Any]) -> FineTuneConfig:
    """Validate a job's hyperparameters (``None`` values mean unset); raises ``InvalidHyperparameters``."""
    try:
        return FineTuneConfig(**{key: value for key, value in values.items() if value is not None})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or 'config'}: {error['msg'].removeprefix('Value error, ')}"
            + ("" if error["type"] in ("extra_forbidden", "value_error") else f" (got {error.get('input')!r})")
            for error in exc.errors()
        )
        if any(error["type"] == "extra_forbidden" for error in exc.errors()):
            problems += f" — known hyperparameters: {', '.join(FineTuneConfig.model_fields)}"
        raise InvalidHyperparameters(f"invalid fine-tuning hyperparameters: {problems}") from exc


def expand_sweep(values: Mapping[str, Any], *, max_trials: int) -> list[FineTuneConfig]:
    """One config per combination of the listed values (``{"learning_rate": [0.1, 0.01]}``: two trials).

    Only the ``SWEEPABLE`` hyperparameters may be lists; each list holds 1-16 distinct values. The order is
    the lists' order, the last name varying fastest, so trial numbers are stable.
    """
    axes: dict[str, list[Any]] = {}
    for name, value in values.items():
        if not isinstance(value, list):
            continue
        if name not in SWEEPABLE:
            raise InvalidHyperparameters(
                f"hyperparameter {name} cannot take a list of values; sweepable: {', '.join(SWEEPABLE)}"
            )
        if not value or len(value) > 16 or len({json.dumps(v) for v in value}) != len(value):
            raise InvalidHyperparameters(
                f"hyperparameter {name}: give 1-16 distinct values to sweep over, got {value!r}"
            )
        axes[name] = value
    trials = 1
    for options in axes.values():
        trials *= len(options)
    if trials > max_trials:
        sizes = " x ".join(f"{len(v)} {k}" for k, v in axes.items())
        raise InvalidHyperparameters(
            f"the sweep has {trials} trials ({sizes}); at most {max_trials} are allowed per job"
        )
    fixed = {name: value for name, value in values.items() if name not in axes}
    return [
        build_finetune_config({**fixed, **dict(zip(axes, combination, strict=True))})
        for combination in itertools.product(*axes.values())
    ]
