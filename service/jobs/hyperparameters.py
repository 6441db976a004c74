"""Hyperparameters: the one schema of what a training run is given, by the names ``imgcls train``, config
files, ``imgcls finetune`` and the job API share. No torch here, so the API can import it.

``Hyperparameters`` owns the shared fields (name, type, range, description, and the default where every
recipe agrees) and the lists of optimizer and learning-rate policy names. Two recipes extend it:
``FineTuneConfig`` below (a fine-tuning job; the API checks a submission with it before it is accepted)
and ``training.config.TrainConfig`` (``imgcls train``); each gives the defaults of its recipe.

The training registries (``training/optim/``) check at import that they hold exactly these names. The
*options* of an optimizer or policy (``optimizer_options``, ``lr_policy_options``) are checked by the
registries alone: a job with a bad option fails on the worker with the registry's message.
"""

import itertools
import json
from collections.abc import Callable, Iterable, Mapping
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

import annotated_types
import msgspec
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator
from pydantic.fields import FieldInfo

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
# Training augmentation, by the names users give (training/data/transforms.py holds what each does). A bool
# is read as before this list existed: true "crop-flip", false "none".
AUGMENTATIONS = ("none", "crop-flip", "photo", "photo+randaugment", "photo+trivialaugment")
SWEEPABLE = ("learning_rate", "optimizer", "lr_policy", "batch_size")  # a list of values: one trial per combination


def _one_of(field: str, names: tuple[str, ...]) -> Callable[[str], str]:
    def check(name: str) -> str:
        if name not in names:
            raise ValueError(f"unknown {field} {name!r} (known: {', '.join(names)})")
        return name

    return check


# ---------------------------------------------------------------------------------------------------------
# The shared fields' types: a recipe gives a field its default with ``epochs: Epochs = 8``
# ---------------------------------------------------------------------------------------------------------

Epochs = Annotated[int, Field(ge=1, description="passes over the training images")]
BatchSize = Annotated[int, Field(ge=1, description="images per parameter update (per process)")]
Optimizer = Annotated[
    str, AfterValidator(_one_of("optimizer", OPTIMIZERS)), Field(description=f"one of {', '.join(OPTIMIZERS)}")
]
LearningRate = Annotated[float, Field(gt=0.0, description="peak rate")]
LrPolicy = Annotated[
    str, AfterValidator(_one_of("lr_policy", LR_POLICIES)), Field(description=f"one of {', '.join(LR_POLICIES)}")
]
WeightDecay = Annotated[
    float | None,
    Field(ge=0.0, description="L2 penalty, not on norm or bias parameters; default 5e-4 (0 for rprop, lbfgs, ftrl)"),
]


def _augmentation(value: Any) -> Any:
    """A bool as configs, recipes and jobs wrote it before there were names; then the name checked."""
    if isinstance(value, bool):
        return "crop-flip" if value else "none"
    if value is not None:
        _one_of("augment", AUGMENTATIONS)(value)
    return value


Augment = Annotated[
    str | None,
    BeforeValidator(_augmentation),
    Field(
        description=f"one of {', '.join(AUGMENTATIONS)} (true: crop-flip); unset: photo for folder and uploaded "
        "datasets of photos (input 64 px or more), none for the others"
    ),
]
ValFraction = Annotated[
    float,
    Field(ge=0.0, lt=1.0, description="share of the training images held out for early stopping and calibration"),
]

EarlyStoppingPatience = Annotated[
    int | None,
    Field(
        ge=0,
        description="stop after this many epochs without a better validation accuracy (the best epoch is kept "
        "either way); 0 or unset: run every epoch",
    ),
]


class Hyperparameters(BaseModel):
    """The fields every training run takes. Not built on its own: a recipe (``FineTuneConfig``,
    ``TrainConfig``) extends it and sets the defaults that differ between recipes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    epochs: Epochs
    batch_size: BatchSize
    optimizer: Optimizer
    optimizer_options: dict[str, Any] = Field(
        default_factory=dict, description='e.g. {"momentum": 0.9}; every default filled in once resolved'
    )
    learning_rate: LearningRate
    weight_decay: WeightDecay = None
    lr_policy: LrPolicy
    lr_policy_options: dict[str, Any] = Field(
        default_factory=dict,
        description='e.g. {"gamma": 0.1, "step_size": 1000}; every default filled in once resolved',
    )
    augment: Augment = None
    val_fraction: ValFraction
    label_smoothing: float = Field(
        default=0.1, ge=0.0, lt=1.0, description="share of the target spread over all classes"
    )
    early_stopping_patience: EarlyStoppingPatience = None
    seed: int = Field(default=0, ge=0, description="seeds the splits, initialization, shuffling and augmentation")

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: what checkpoints, manifests, job records and ``config.yaml`` hold."""
        return dict(json.loads(self.model_dump_json()))


def describe_problems(exc: ValidationError, *, known: Iterable[str], word: str) -> str:
    """pydantic's errors as one line, each naming its field and the value given; ``known`` lists the
    ``word`` (options, hyperparameters) when a name is not one of them."""
    problems = "; ".join(
        f"{'.'.join(str(p) for p in error['loc']) or 'config'}: {error['msg'].removeprefix('Value error, ')}"
        + ("" if error["type"] in ("extra_forbidden", "value_error") else f" (got {error.get('input')!r})")
        for error in exc.errors()
    )
    if any(error["type"] == "extra_forbidden" for error in exc.errors()):
        problems += f" — known {word}: {', '.join(known)}"
    return problems


# ---------------------------------------------------------------------------------------------------------
# A fine-tuning job
# ---------------------------------------------------------------------------------------------------------


class FineTuneConfig(Hyperparameters):
    """A job's hyperparameters; ``None`` ones are resolved at the start.

    The defaults are the transfer-learning recipe (docs/models.md): a pretrained backbone is frozen for the
    first epoch while the new head settles, then trains at 0.3 times the head's rate; AdamW under a cosine
    decay, label smoothing 0.1, and the epoch with the best validation accuracy is the one published, with
    early stopping after 3 epochs without a better one. The upper bounds are what one job may ask of a
    worker.
    """

    epochs: Annotated[Epochs, Field(le=1000)] = 8
    batch_size: Annotated[BatchSize, Field(le=4096)] = 32  # small, so a small set still gives steps
    optimizer: Optimizer = "adamw"
    learning_rate: Annotated[LearningRate, Field(le=10.0, description="the head's peak rate")] = 0.003
    weight_decay: Annotated[WeightDecay, Field(le=1.0)] = None
    # cosine starts at the full rate, so the head learns in the frozen first epoch (onecycle's warm-up would
    # spend it at a 25th of the rate)
    lr_policy: LrPolicy = "cosine"
    val_fraction: Annotated[
        ValFraction,
        Field(
            gt=0.0,
            description="share of the training images held out for early stopping and calibration (20 % of "
            "the dataset is held out first for the test)",
        ),
    ] = 0.1
    # A submitted null means "the default" (build_finetune_config), so 0 is how a job turns early stopping
    # off. None stays valid for the records of jobs submitted before it was on by default: off, as then.
    early_stopping_patience: Annotated[
        EarlyStoppingPatience,
        Field(
            le=1000,
            description="stop after this many epochs without a better validation accuracy (the best epoch is "
            "published either way); 0: run every epoch",
        ),
    ] = 3
    freeze_backbone_epochs: int = Field(
        default=1,
        ge=0,
        description="epochs at the start in which only the head learns (the new head settles before its "
        "gradients reach the pretrained features)",
    )
    backbone_lr_multiplier: float = Field(
        default=0.3, gt=0.0, le=10.0, description="backbone rate = learning_rate x this, once it is unfrozen"
    )

    @model_validator(mode="after")
    def _freeze_within_epochs(self) -> "FineTuneConfig":
        if self.freeze_backbone_epochs > self.epochs:
            raise ValueError(
                f"freeze_backbone_epochs ({self.freeze_backbone_epochs}) is more than epochs ({self.epochs}); "
                f"use at most {self.epochs} (all epochs: only the head learns)"
            )
        return self


def build_finetune_config(values: Mapping[str, Any]) -> FineTuneConfig:
    """Validate a job's hyperparameters (``None`` values mean unset); raises ``InvalidHyperparameters``."""
    try:
        return FineTuneConfig(**{key: value for key, value in values.items() if value is not None})
    except ValidationError as exc:
        problems = describe_problems(exc, known=FineTuneConfig.model_fields, word="hyperparameters")
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


# ---------------------------------------------------------------------------------------------------------
# What a client may ask (GET /v1/fine-tuning/hyperparameters)
# ---------------------------------------------------------------------------------------------------------


class Hyperparameter(msgspec.Struct, frozen=True, omit_defaults=True):
    """One field of a job's hyperparameters: its JSON type, default and bounds."""

    name: str
    type: str  # integer, number, string, boolean or object
    nullable: bool  # null means the default; for weight_decay: resolved by the worker
    default: Any
    description: str
    minimum: float | None = None
    exclusive_minimum: float | None = None
    maximum: float | None = None
    exclusive_maximum: float | None = None
    choices: list[str] | None = None  # optimizer, lr_policy, augment
    sweepable: bool = False  # a list of values makes a sweep: one trial per combination


class HyperparameterSchema(msgspec.Struct, frozen=True):
    optimizers: list[str]
    lr_policies: list[str]
    sweepable: list[str]
    hyperparameters: list[Hyperparameter]


_JSON_TYPES: dict[object, str] = {int: "integer", float: "number", str: "string", bool: "boolean", dict: "object"}
_BOUNDS = {
    annotated_types.Ge: ("minimum", "ge"),
    annotated_types.Gt: ("exclusive_minimum", "gt"),
    annotated_types.Le: ("maximum", "le"),
    annotated_types.Lt: ("exclusive_maximum", "lt"),
}


def _describe(name: str, field: FieldInfo) -> Hyperparameter:
    annotation = field.annotation
    nullable = get_origin(annotation) in (Union, UnionType)
    if nullable:
        annotation = next(a for a in get_args(annotation) if a is not type(None))
    bounds = {
        key: getattr(item, attribute)
        for item in field.metadata
        for kind, (key, attribute) in _BOUNDS.items()
        if isinstance(item, kind)
    }
    # a recipe that narrows a shared range ([0, 1) to (0, 1)) leaves two lower bounds: keep the tighter
    if "minimum" in bounds and "exclusive_minimum" in bounds:
        bounds.pop("minimum" if bounds["exclusive_minimum"] >= bounds["minimum"] else "exclusive_minimum")
    if "maximum" in bounds and "exclusive_maximum" in bounds:
        bounds.pop("maximum" if bounds["exclusive_maximum"] <= bounds["maximum"] else "exclusive_maximum")
    return Hyperparameter(
        name=name,
        type=_JSON_TYPES[get_origin(annotation) or annotation],
        nullable=nullable,
        default=field.get_default(call_default_factory=True),
        description=field.description or "",
        choices={"optimizer": list(OPTIMIZERS), "lr_policy": list(LR_POLICIES), "augment": list(AUGMENTATIONS)}.get(
            name
        ),
        sweepable=name in SWEEPABLE,
        **bounds,
    )


def finetune_schema() -> HyperparameterSchema:
    """Every hyperparameter a job takes, with its default and bounds, and the names it accepts."""
    return HyperparameterSchema(
        optimizers=list(OPTIMIZERS),
        lr_policies=list(LR_POLICIES),
        sweepable=list(SWEEPABLE),
        hyperparameters=[_describe(name, field) for name, field in FineTuneConfig.model_fields.items()],
    )
