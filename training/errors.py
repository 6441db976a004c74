"""Errors a user can fix. The CLI prints each as one line, ``<ErrorName>: <message>``, and exits 1.

Every message names the problem and, where there is one, the fix.
"""

from collections.abc import Iterable


class TrainingError(Exception):
    """Base class for problems in the user's input, data or environment (not bugs)."""


class UnknownName(TrainingError):
    """A name looked up in a registry that does not hold it."""

    def __init__(self, name: str, known: Iterable[str]) -> None:
        self.name = name
        self.known = sorted(known)
        super().__init__(f"{name} (known: {', '.join(self.known)})")


class UnknownModel(UnknownName):
    pass


class UnknownDataset(UnknownName):
    pass


class UnknownOptimizer(UnknownName):
    pass


class UnknownPolicy(UnknownName):
    pass


class InvalidHyperparameter(TrainingError):
    pass


class UnusableData(TrainingError):
    """Training data that cannot be used: missing, corrupt or unusable files or folders (an uploaded
    dataset that the service refuses is ``service.datasets.DatasetError``)."""


class CheckpointError(TrainingError):
    pass


class UnusableWeights(TrainingError):
    """A weights file that cannot start a model: refused by ``torch.load(weights_only=True)``, not a
    state_dict, other keys or shapes than the architecture's, or content that does not match the sha256
    prefix in its name (``resnet18-f37072fd.pth``). The CLI exits 2: the input is wrong, not the run."""


class ExportError(TrainingError):
    """The ONNX export failed its own checks (checker or onnxruntime-vs-torch parity)."""


class OutputExists(TrainingError):
    pass


class AccuracyDropTooLarge(TrainingError):
    """A quantized variant lost more test accuracy than allowed; nothing was added to the repository."""
