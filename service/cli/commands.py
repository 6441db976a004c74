"""What a package adds to ``imgcls``: its commands, imported only when used, and the errors a user can fix."""

from dataclasses import dataclass


@dataclass(frozen=True)
class LazyCommand:
    """A click command by where it lives, so listing commands imports nothing heavy (torch, onnxruntime)."""

    module: str
    attribute: str
    summary: str  # one line for ``imgcls --help``
    runs_models: bool = False  # needs onnxruntime, which comes with the `cpu` or `gpu` extra, not the base install


@dataclass(frozen=True)
class CommandSet:
    commands: dict[str, LazyCommand]
    user_errors: tuple[type[Exception], ...]  # shown as ``error: <Kind>: <message>``, exit 1
    usage_errors: tuple[type[Exception], ...]  # the same line, exit 2 (unknown names, invalid values)
    needs: frozenset[str]  # top-level modules the commands import; one missing: "pip install 'imgcls[train]'"
