"""Inference errors, without HTTP: the API maps each to a status code in one table (service/api/errors.py)."""


class InferenceError(Exception):
    """Base of everything the inference layer raises on purpose."""


class ModelNotLoaded(InferenceError):
    """The model or version exists in the repository but this server has not loaded it."""


class VersionNotLoaded(ModelNotLoaded):
    """A published version (or variant) this server could load but has not."""

    def __init__(self, name: str, version: int, variant: str | None) -> None:
        what = f"{name} v{version}" + (f" ({variant})" if variant else "")
        super().__init__(f"{what} is not loaded on this server")
        self.name = name
        self.version = version
        self.variant = variant


class VariantNotFound(InferenceError):
    """A variant ("int8") that the version's manifest does not list."""


class QueueFull(InferenceError):
    """The version's queue is at its bound; the client should retry after ``retry_after_s``."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ProviderUnavailable(InferenceError):
    """The configured execution provider (cuda) does not work on this machine."""


class StillLoading(InferenceError):
    """This server process is still loading its models at start-up; the client should retry in a moment."""


class ShuttingDown(InferenceError):
    """A version was released while a request waited for it; the client may retry."""


class VersionInUse(InferenceError):
    """An admin asked to unload the version that serves a model's default traffic."""


class InvalidArgument(InferenceError):
    """A request parameter out of range (top_k larger than the number of labels, no images, ...)."""


class ExplanationUnavailable(InferenceError):
    """Class activation maps asked of a version without an explain graph (an imported ONNX file, an architecture
    whose classifier is not one linear layer on a global pool, a version published before explanations)."""


class UnknownClass(InferenceError):
    """An explanation asked for a class label the model does not have."""
