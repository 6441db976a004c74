"""Command-line options generated from the TrainConfig fields, so the CLI, config files and the
fine-tuning API use the same names (``--learning-rate`` is ``learning_rate`` everywhere)."""

import re
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any, Union, get_args, get_origin

import click
import yaml

from service.jobs.hyperparameters import AUGMENTATIONS
from training.config import TrainConfig
from training.data import DATASETS
from training.models import model_names
from training.settings import TrainingSettings

# Options whose values are mappings: given as repeatable KEY=VALUE.
MAPPING_OPTIONS = {
    "optimizer_options": (
        "--optimizer-option",
        "KEY=VALUE",
        "an optimizer hyperparameter, e.g. momentum=0.95",
    ),
    "lr_policy_options": ("--lr-policy-option", "KEY=VALUE", "a policy parameter, e.g. gamma=0.1"),
    "lr_multipliers": (
        "--lr-multiplier",
        "PATTERN=X",
        "rate multiplier for matching modules, e.g. 'head*=1'",
    ),
}


CONFIG_FILE_OPTION = click.option(
    "--config", "config_file", type=click.Path(path_type=Path), help="YAML or TOML file of options."
)
DATA_DIR_OPTION = click.option(
    "--data-dir", type=click.Path(path_type=Path), help="Fashion-MNIST IDX folder [env IMGCLS_FASHION_MNIST_DIR]."
)


def settings_from(*, data_dir: Path | None = None, model_root: Path | None = None) -> TrainingSettings:
    """The environment's settings, overridden by the --data-dir / --model-root options that were given."""
    overrides = {"fashion_mnist_dir": data_dir, "model_root": model_root}
    return TrainingSettings().model_copy(update={k: v for k, v in overrides.items() if v is not None})


def parse_pairs(option: str, pairs: tuple[str, ...]) -> dict[str, Any] | None:
    """KEY=VALUE strings into a dict; values are read as YAML scalars or lists (0.9, true, [0.9, 0.99])."""
    if not pairs:
        return None
    parsed: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint=option)
        try:
            parsed[key.strip()] = exponents_as_floats(yaml.safe_load(value))
        except yaml.YAMLError as exc:
            raise click.BadParameter(f"{pair!r}: cannot read the value ({exc})", param_hint=option) from exc
    return parsed


EXPONENT_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def exponents_as_floats(value: Any) -> Any:
    """YAML 1.1 reads ``1e-6`` (no dot in the mantissa) as a string; read it, also inside lists, as a number."""
    if isinstance(value, str) and EXPONENT_NUMBER.fullmatch(value.strip()):
        return float(value)
    if isinstance(value, list):
        return [exponents_as_floats(item) for item in value]
    return value


def _is_bool(annotation: Any) -> bool:
    return annotation is bool


def _scalar_type(annotation: Any) -> Any:
    if get_origin(annotation) in (Union, types.UnionType):
        annotation = next(a for a in get_args(annotation) if a is not type(None))
    return {int: click.INT, float: click.FLOAT}.get(annotation, click.STRING)


def config_options() -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A decorator adding one option per TrainConfig field (all default None: unset means 'not given')."""
    extra_help = {"model": f": {', '.join(model_names())}", "dataset": f" (built in: {', '.join(DATASETS)})"}

    def decorate(function: Callable[..., Any]) -> Callable[..., Any]:
        for name, field in reversed(TrainConfig.model_fields.items()):
            default = field.get_default(call_default_factory=True)
            shown = "" if default is None else f" [default: {default}]"
            help_text = f"{field.description or ''}{extra_help.get(name, '')}{shown}"
            flag = "--" + name.replace("_", "-")
            if name in MAPPING_OPTIONS:
                option, metavar, what = MAPPING_OPTIONS[name]
                function = click.option(option, name, multiple=True, metavar=metavar, help=f"{what}; repeatable")(
                    function
                )
            elif name == "augment":  # a name; alone, "crop-flip", as the flag --augment meant before there were names
                function = click.option(
                    flag,
                    name,
                    type=click.Choice(AUGMENTATIONS),
                    is_flag=False,
                    flag_value="crop-flip",
                    default=None,
                    help=help_text,
                )(function)
            elif _is_bool(field.annotation):
                function = click.option(f"{flag}/--no-{flag[2:]}", name, default=None, help=help_text)(function)
            else:
                function = click.option(flag, name, type=_scalar_type(field.annotation), default=None, help=help_text)(
                    function
                )
        return function

    return decorate


def given_values(values: dict[str, Any]) -> dict[str, Any]:
    """The TrainConfig fields the user set on the command line (mapping options parsed)."""
    given: dict[str, Any] = {}
    for name in TrainConfig.model_fields:
        value = values.get(name)
        if name in MAPPING_OPTIONS:
            value = parse_pairs(MAPPING_OPTIONS[name][0], tuple(value or ()))
        if value is not None:
            given[name] = value
    return given
