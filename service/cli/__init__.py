"""``imgcls``: one command line. This package holds the group and the service's commands (serve, classify,
api-key, jobs, up), which run without the training package; training's commands (train, evaluate, ..., worker)
join the group when the training package and torch are installed (``training.cli.TRAINING``).

Commands are imported only when used, so ``imgcls models list`` does not pay for torch. ``imgcls --help``
lists training's commands only where they can run; elsewhere its last line says how to get them. Problems
a user can fix are printed as one line, ``error: <Kind>: <message>``, with exit code 2 for usage errors
(bad options, unknown names, invalid values) and 1 for everything else (missing data, files, ...).
"""

import importlib
import importlib.util
import sys
from collections.abc import Sequence
from typing import Any

import click
from pydantic import ValidationError

from service.cli.commands import CommandSet, LazyCommand
from service.cli.errors import UsageProblem, UserError
from service.importing.errors import ImportRejected
from service.inference.errors import InferenceError
from service.jobs.errors import InvalidJob, JobError
from service.repository import RepositoryError
from service.settings import describe_invalid
from service.up.errors import CannotStart

SERVICE = CommandSet(
    commands={
        "serve": LazyCommand(
            "service.cli.serve",
            "serve",
            "Serve the repository's models over HTTP (/v1, /v2, /metrics).",
            runs_models=True,
        ),
        "classify": LazyCommand(
            "service.cli.classify",
            "classify",
            "Classify image files and folders offline (no server).",
            runs_models=True,
        ),
        "api-key": LazyCommand("service.cli.api_key", "api_key", "Create API keys for the service."),
        "jobs": LazyCommand(
            "service.cli.jobs", "jobs", "Submit, list, watch and cancel fine-tuning jobs on an API server."
        ),
        "up": LazyCommand(
            "service.cli.up",
            "up",
            "Run Redis, the API and fine-tuning workers on this machine as one unit.",
            runs_models=True,
        ),
    },
    user_errors=(RepositoryError, InferenceError, JobError, CannotStart),
    usage_errors=(InvalidJob, ImportRejected),
    needs=frozenset(),
)
TRAINING_INSTALL = "pip install 'imgcls[train]'"
RUNTIME_INSTALL = "pip install 'imgcls[cpu]' (or 'imgcls[gpu]' for onnxruntime-gpu)"


def training_commands() -> CommandSet | None:
    """Training's commands, or None where the training package is not installed (the api image)."""
    if importlib.util.find_spec("training") is None:
        return None
    from training.cli import TRAINING  # torch-free: only the table and the error kinds

    return TRAINING


def can_train() -> bool:
    return importlib.util.find_spec("torch") is not None and importlib.util.find_spec("training") is not None


def user_error(error: Exception) -> UserError | None:
    """``error`` as one line for the user, or None when it is a bug (then the traceback shows)."""
    sets = [SERVICE]
    if "training" in sys.modules and (training := training_commands()) is not None:  # only training raises them
        sets.append(training)
    for commands in sets:
        if isinstance(error, commands.usage_errors):
            return UsageProblem(f"{type(error).__name__}: {error}")
    for commands in sets:
        if isinstance(error, commands.user_errors):
            return UserError(f"{type(error).__name__}: {error}")
    if isinstance(error, ValidationError) and error.title.endswith("Settings"):
        return UsageProblem(describe_invalid(error))
    return None


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        training = training_commands() if can_train() else None
        return [*SERVICE.commands, *(training.commands if training else ())]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in SERVICE.commands:
            command = SERVICE.commands[cmd_name]
            if command.runs_models and importlib.util.find_spec("onnxruntime") is None:
                raise UserError(
                    f"imgcls {cmd_name} needs an inference runtime (onnxruntime is not installed): {RUNTIME_INSTALL}"
                )
            return load(command)
        training = training_commands()
        if training is None:
            raise UsageProblem(
                f"no command {cmd_name!r} here: this installation has the service's only "
                f"({', '.join(SERVICE.commands)}); training's commands need {TRAINING_INSTALL}"
            )
        if cmd_name not in training.commands:
            return None
        try:
            return load(training.commands[cmd_name])
        except ModuleNotFoundError as error:
            if error.name not in training.needs:
                raise
            raise UserError(
                f"imgcls {cmd_name} needs the training dependencies ({error.name} is not installed): "
                f"{TRAINING_INSTALL}; this installation has the API's only (as the api image)"
            ) from error

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        training = training_commands() if can_train() else None
        listed = {**SERVICE.commands, **(training.commands if training else {})}
        with formatter.section("Commands"):
            formatter.write_dl([(name, command.summary) for name, command in listed.items()])
        if training is None:
            formatter.write_paragraph()
            formatter.write_text(
                f"Training commands (train, evaluate, fine-tune, worker, ...) need {TRAINING_INSTALL}."
            )

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except Exception as error:
            problem = user_error(error)
            if problem is None:
                raise
            raise problem from error


def load(command: LazyCommand) -> click.Command:
    loaded: click.Command = getattr(importlib.import_module(command.module), command.attribute)
    return loaded


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="imgcls")
def cli() -> None:
    """imgcls: train image classifiers, publish them as ONNX, and serve them.

    Settings come from the environment (prefix IMGCLS_, see docs/operations.md); options override them.
    """


def main(argv: Sequence[str] | None = None) -> None:
    cli.main(args=list(argv) if argv is not None else sys.argv[1:], prog_name="imgcls")
