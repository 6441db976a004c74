"""Training's commands for ``imgcls`` (the group itself is ``service.cli``): the table it plugs in.

Importing this module is cheap and torch-free: the commands are imported only when used. ``service.cli``
lists them where the training package and torch are installed, and shows training's errors as one line
(``error: <Kind>: <message>``): exit 2 for unknown names and invalid values, 1 for the rest.
"""

from service.cli.commands import CommandSet, LazyCommand
from training.config import ConfigError
from training.errors import InvalidHyperparameter, TrainingError, UnknownName, UnusableWeights

TRAINING = CommandSet(
    commands={
        "train": LazyCommand("training.cli.train", "train", "Train a model, calibrate, export to ONNX and publish it."),
        "evaluate": LazyCommand("training.cli.evaluate", "evaluate", "Evaluate a published ONNX version on a dataset."),
        "export": LazyCommand("training.cli.export", "export", "Export a checkpoint to ONNX (with the parity check)."),
        "publish": LazyCommand("training.cli.export", "publish", "Publish a finished run folder into the repository."),
        "models": LazyCommand("training.cli.models", "models", "List, show, promote and import published models."),
        "quantize": LazyCommand(
            "training.cli.quantize", "quantize", "Add an int8 variant of a published version (onnxruntime)."
        ),
        "lr-find": LazyCommand(
            "training.cli.lr_find", "lr_find", "LR range test: sweep the rate, plot the loss, suggest a rate."
        ),
        "batch-sweep": LazyCommand(
            "training.cli.batch_sweep", "batch_sweep", "Images/second and peak memory per batch size."
        ),
        "compare": LazyCommand(
            "training.cli.compare", "compare", "Train under several optimizers or LR policies; plot and tabulate."
        ),
        "fine-tune": LazyCommand(
            "training.cli.finetune", "finetune", "Fine-tune a published model on an image folder; publish it."
        ),
        "worker": LazyCommand(
            "training.cli.worker", "worker", "Run fine-tuning jobs from the queue (a Celery worker)."
        ),
    },
    user_errors=(TrainingError,),
    usage_errors=(UnknownName, InvalidHyperparameter, ConfigError, UnusableWeights),
    needs=frozenset({"torch", "torchvision", "onnx", "onnxscript", "matplotlib", "tensorboard", "sklearn"}),
)
