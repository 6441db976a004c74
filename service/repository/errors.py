"""Domain errors of the model repository. They carry no HTTP; the API maps them to status codes."""

import errno
from pathlib import Path


class RepositoryError(Exception):
    """Base class: something about the repository or a request against it is wrong."""


class ModelNotFound(RepositoryError):
    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(f"no model named {name!r} in the repository (known: {', '.join(known) or 'none'})")
        self.name = name


class VersionNotFound(RepositoryError):
    def __init__(self, name: str, version: int, known: list[int]) -> None:
        listed = ", ".join(str(v) for v in known) or "none"
        super().__init__(f"model {name!r} has no version {version} (published: {listed})")
        self.name = name
        self.version = version


class AliasNotFound(RepositoryError):
    def __init__(self, name: str, alias: str, known: list[str]) -> None:
        super().__init__(f"model {name!r} has no alias {alias!r} (aliases: {', '.join(known) or 'none'})")
        self.name = name
        self.alias = alias


class CorruptVersion(RepositoryError):
    """A published version whose files do not match its manifest (sha256, missing file, bad JSON)."""


class ReportNotFound(RepositoryError):
    """A version without an evaluation report: published before reports existed, or imported without labelled
    images to measure it on."""

    def __init__(self, name: str, version: int) -> None:
        super().__init__(
            f"{name} v{version} has no evaluation report (versions published before reports existed, and imported "
            f"versions without --evaluate-on, have none): imgcls evaluate {name} {version} --attach-report measures "
            "it and attaches one; --report DIR writes it as files"
        )
        self.name = name
        self.version = version


class UnfinishedRun(RepositoryError):
    """A run folder without the files a completed run writes (``result.json``, ``model.onnx``): nothing to
    publish yet."""


class RepositoryReadOnly(RepositoryError):
    """A write the repository needs fails because the file system refuses it: a read-only mount (a volume
    mounted ``:ro``), or folders this process may not write. Serving still works; publishing, variants and
    alias changes do not."""

    def __init__(self, root: Path, action: str, error: OSError) -> None:
        state = "read-only" if error.errno == errno.EROFS else "not writable by this process"
        super().__init__(
            f"the model repository {root} is {state}: {action} needs write access ({error.strerror}: {error.filename})"
        )
        self.root = root
