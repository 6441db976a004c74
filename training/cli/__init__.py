"""``imgcls``: one command line, subcommands grouped by area.

Subcommands are imported only when used, so ``imgcls models list`` does not pay for torch. Problems a
user can fix are printed as one line, ``error: <Kind>: <message>``, with exit code 2 for usage errors
(bad options, unknown names, invalid values) and 1 for everything else (missing data, files, ...).
"""

import importlib
import sys
from collections.abc import Sequence
from typing import Any

import click
from pydantic import ValidationError

from service.inference.errors import InferenceError
from service.jobs.errors import InvalidJob, JobError
from service.repository import RepositoryError
from service.settings import describe_invalid
from training.config import ConfigError
from training.errors import InvalidHyperparameter, TrainingError, UnknownName

COMMANDS = {
    "train": ("training.cli.train", "train", "Train a model, calibrate, export to ONNX and publish it."),
    "evaluate": ("training.cli.evaluate", "evaluate", "Evaluate a published ONNX version on a dataset."),
    "export": ("training.cli.export", "export", "Export a checkpoint to ONNX (with the parity check)."),
    "publish": ("training.cli.export", "publish", "Publish a finished run folder into the repository."),
    "models": ("training.cli.models", "models", "List, show and promote published models."),
    "quantize": ("training.cli.quantize", "quantize", "Add an int8 variant of a published version (onnxruntime)."),
    "lr-find": ("training.cli.lr_find", "lr_find", "LR range test: sweep the rate, plot the loss, suggest a rate."),
    "batch-sweep": ("training.cli.batch_sweep", "batch_sweep", "Images/second and peak memory per batch size."),
    "compare": ("training.cli.compare", "compare", "Train under several optimizers or LR policies; plot and tabulate."),
    "fine-tune": ("training.cli.finetune", "finetune", "Fine-tune a published model on an image folder; publish it."),
    "worker": ("training.cli.worker", "worker", "Run fine-tuning jobs from the queue (a Celery worker)."),
    "serve": ("service.cli.serve", "serve", "Serve the repository's models over HTTP (/v1, /v2, /metrics)."),
    "classify": ("service.cli.classify", "classify", "Classify image files and folders offline (no server)."),
    "api-key": ("service.cli.api_key", "api_key", "Create API keys for the service."),
    "jobs": ("service.cli.jobs", "jobs", "Submit, list, watch and cancel fine-tuning jobs on an API server."),
}


TRAINING_PACKAGES = frozenset({"torch", "torchvision", "onnx", "onnxscript", "matplotlib", "tensorboard", "sklearn"})


class UserError(click.ClickException):
    """A TrainingError, RepositoryError or JobError, shown as one line without a traceback (exit 1)."""

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


class UsageProblem(UserError):
    """Unknown names and invalid values: exit 2, like click's own usage errors."""

    exit_code = 2


def user_error(error: Exception) -> UserError:
    usage = isinstance(error, UnknownName | InvalidHyperparameter | InvalidJob | ConfigError)
    return (UsageProblem if usage else UserError)(f"{type(error).__name__}: {error}")


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module, attribute, _ = COMMANDS[cmd_name]
        try:
            imported = importlib.import_module(module)
        except ModuleNotFoundError as error:
            if error.name not in TRAINING_PACKAGES:
                raise
            raise UserError(
                f"imgcls {cmd_name} needs the training dependencies ({error.name} is not installed): "
                "pip install 'imgcls[train]'; this installation has the API's only (as the api image)"
            ) from error
        command: click.Command = getattr(imported, attribute)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, summary) for name, (_, _, summary) in COMMANDS.items()])

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (TrainingError, RepositoryError, InferenceError, JobError) as error:
            raise user_error(error) from error
        except ValidationError as error:
            if not error.title.endswith("Settings"):
                raise
            raise UsageProblem(describe_invalid(error)) from error


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="imgcls")
def cli() -> None:
    """imgcls: train image classifiers, publish them as ONNX, and serve them.

    Settings come from the environment (prefix IMGCLS_, see docs/operations.md); options override them.
    """


def main(argv: Sequence[str] | None = None) -> None:
    cli.main(args=list(argv) if argv is not None else sys.argv[1:], prog_name="imgcls")
