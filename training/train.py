"""One training run: data → model → parameter updates → calibrate → test → export → publish.

``run(config, ...)`` is what ``imgcls train`` calls, and what ``training.finetune`` builds on (with the
data already loaded and a ``Pretrained`` start). It is also the torchrun entry point:
``torchrun --nproc-per-node 2 -m training.train --epochs 2 ...`` takes the same options as
``imgcls train``; every process trains, rank 0 alone writes the run folder and publishes.

The run folder (``--output-dir``, default ``<runs_dir>/<name>-<model>-<UTC time>``) is laid out as
``service.repository.run_folder.RunFolder`` says.
"""

import shutil
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import msgspec
import torch
import torch.distributed as dist
import yaml
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from service.repository import Preprocessing, VersionRef
from service.repository.run_folder import EarlyStop, RunFolder
from service.version import code_version
from training.assemble import build_model_and_optimizer, uses_channels_last
from training.batches import EVAL_BATCH_SIZE, batches_per_epoch, eval_batches, training_batches
from training.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from training.config import TrainConfig
from training.data import DatasetBundle, load_dataset, train_val_split
from training.distributed import Processes, barrier, pick_device, start_processes, stop_processes
from training.ema import WeightAverage
from training.engine import EpochResult, Evaluation, evaluate, train_one_epoch
from training.errors import CheckpointError, InvalidHyperparameter, OutputExists
from training.finish import finish_run
from training.models import head_of
from training.optim import (
    build_scheduler,
    resolve_optimizer_options,
    resolve_policy_options,
    takes_weight_decay,
)
from training.pretrained import initial_weights
from training.reporting import RunLog
from training.settings import TrainingSettings
from training.tta import tta_doubt

DEFAULT_WEIGHT_DECAY = 5e-4


@dataclass(frozen=True)
class RunResult:
    run_dir: Path
    status: Literal["completed", "interrupted"]
    epochs_completed: int
    metrics: dict[str, float]  # empty unless completed
    published: VersionRef | None
    rank: int = 0  # under torchrun, which process this is; only rank 0 reports
    best_epoch: int = 0  # the epoch whose weights were exported (completed runs)
    early_stop: EarlyStop | None = None  # why a completed run ended before its last epoch


@dataclass(frozen=True)
class Pretrained:
    """Start from trained weights instead of a random initialization (fine-tuning).

    ``weights`` is a state_dict of the same architecture. It holds every tensor of the new model, except
    that the tensors of ``head`` (the classifier module, ``training.models.head_of``) may be left out:
    then the head keeps its fresh, seeded initialization (a new label set). Every parameter outside
    ``head`` is the backbone; it takes no updates during the first ``freeze_backbone_epochs`` epochs
    (BatchNorm running statistics, which are not parameters, still follow the new images).
    """

    weights: Mapping[str, torch.Tensor]
    head: str
    freeze_backbone_epochs: int = 0


@dataclass(frozen=True)
class Split:
    """The images a run trains, validates and tests on, as uint8 tensors."""

    train: tuple[torch.Tensor, torch.Tensor]
    val: tuple[torch.Tensor, torch.Tensor]
    test: tuple[torch.Tensor, torch.Tensor]


def split_dataset(data: DatasetBundle, config: TrainConfig) -> Split:
    train_index, val_index = train_val_split(data.train_labels, val_fraction=config.val_fraction, seed=config.seed)
    if config.train_subset is not None:
        train_index = train_index[: config.train_subset]
    test_count = config.test_subset or len(data.test_labels)
    return Split(
        train=(data.train_images[train_index], data.train_labels[train_index]),
        val=(data.train_images[val_index], data.train_labels[val_index]),
        test=(data.test_images[:test_count], data.test_labels[:test_count]),
    )


def resolve_config(config: TrainConfig, *, train_images: int, world_size: int) -> TrainConfig:
    """Fill every default that depends on other choices, so the saved config reproduces the run."""
    total_iters = batches_per_epoch(train_images, config.batch_size, world_size) * config.epochs
    weight_decay = config.weight_decay
    if weight_decay is None:
        weight_decay = DEFAULT_WEIGHT_DECAY if takes_weight_decay(config.optimizer) else 0.0
    return config.model_copy(
        update={
            "weight_decay": weight_decay,
            "optimizer_options": resolve_optimizer_options(config.optimizer, config.optimizer_options),
            "lr_policy_options": resolve_policy_options(
                config.lr_policy, config.lr_policy_options, total_iters=total_iters
            ),
        }
    )


def resolve_augment(config: TrainConfig, data: DatasetBundle) -> TrainConfig:
    """``augment`` unset: the dataset's default (``DatasetBundle.default_augment``: "photo" for folders of
    photos, "none" for the others), written into the config so the saved config names what ran."""
    if config.augment is not None:
        return config
    return config.model_copy(update={"augment": data.default_augment})


def epoch_seed(seed: int, epoch: int) -> int:
    """Each epoch's shuffling, augmentation and dropout depend only on (seed, epoch): resumable."""
    return seed * 1_000_003 + epoch


def epoch_batches(
    config: TrainConfig,
    data: DatasetBundle,
    train: tuple[torch.Tensor, torch.Tensor],
    epoch: int,
    *,
    device: torch.device,
    rank: int = 0,
    world_size: int = 1,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch of shuffled batches, augmented as ``config.augment`` says (unset: as the dataset's default),
    as every tool trains on them."""
    return training_batches(
        *train,
        batch_size=config.batch_size,
        generator=torch.Generator().manual_seed(epoch_seed(config.seed, epoch)),
        preprocessing=data.preprocessing,
        augment=config.augment if config.augment is not None else data.default_augment,
        crop_padding=config.crop_padding,
        flip=data.flip_ok,
        device=device,
        channels_last=uses_channels_last(config),
        rank=rank,
        world_size=world_size,
    )


def default_run_dir(settings: TrainingSettings, config: TrainConfig, name: str) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return settings.runs_dir / f"{name}-{config.model}-{stamp}"


def run(
    config: TrainConfig,
    *,
    settings: TrainingSettings,
    output_dir: Path | None = None,
    resume: bool = False,
    should_stop: Callable[[], bool] = lambda: False,
    progress: bool = True,
    echo: bool = True,
    data: DatasetBundle | None = None,
    start: Pretrained | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> RunResult:
    """Train, and when the run completes, calibrate, test, export and (if ``config.publish``) publish.

    Everything that can be checked is checked before the run folder is created: names, options,
    data files. ``should_stop`` is polled after every batch; a stop keeps the last completed epoch's
    checkpoint, and ``run(..., output_dir=same, resume=True)`` continues exactly from it.

    ``data``: already loaded (fine-tuning decodes with the base model's preprocessing); default: load
    ``config.dataset``. ``start``: begin from these weights (ignored on resume: the checkpoint has them);
    without it, ``config.init_weights`` names a file to begin from (``training.pretrained.initial_weights``).
    ``on_epoch``: called with each epoch's metrics row once its checkpoint is saved (rank 0 only).

    A completed run finishes with the weights of its best epoch (``Progress.better``: the best validation
    accuracy, ties going to the lower validation loss), not necessarily the last one's: those are
    calibrated, tested, exported and published, and ``metrics["best_epoch"]`` says which epoch it was.
    With ``config.early_stopping_patience`` the run ends once that many epochs bring no better one.
    """
    device = pick_device(config.device)
    processes = start_processes(device)
    try:
        if config.threads is not None:
            torch.set_num_threads(config.threads)
        check_before_loading(config, start, processes)
        if data is None:
            data = load_dataset(
                config.dataset,
                fashion_mnist_dir=settings.fashion_mnist_dir,
                image_size=config.image_size,
                seed=config.seed,
            )
        if echo and processes.is_main:
            report_skipped(data)
        split = split_dataset(data, config)
        config = resolve_config(
            resolve_augment(config, data), train_images=len(split.train[1]), world_size=processes.world_size
        )
        doubt = tta_doubt(config.tta, augment=str(config.augment), flip_ok=data.flip_ok)
        if echo and processes.is_main and doubt is not None:
            print(f"# warning: {doubt}", file=sys.stderr)
        if start is None and config.init_weights is not None and not resume:
            start = Pretrained(
                initial_weights(
                    Path(config.init_weights),
                    architecture=config.model,
                    in_channels=data.preprocessing.channels,
                    num_classes=len(data.labels),
                    echo=echo and processes.is_main,
                ),
                head=head_of(config.model),
            )
        name = config.name or model_name_for(data.name)
        setup = set_up(config, data, split, device, processes, start=None if resume else start)
        folder = RunFolder(output_dir or default_run_dir(settings, config, name))
        if resume:
            so_far = resume_from(folder, setup)
        else:
            so_far = Progress([])
            if processes.is_main:
                create_run_folder(folder, config, echo=echo)
        barrier(processes)

        status, so_far = train_epochs(
            setup,
            folder,
            so_far,
            start=start,
            resume=resume,
            should_stop=should_stop,
            on_epoch=on_epoch,
            progress=progress,
            echo=echo,
        )
        if status == "interrupted" or not processes.is_main:
            barrier(processes)
            return RunResult(folder.path, status, so_far.epochs_done, {}, None, rank=processes.rank)
        early_stop = early_stop_of(so_far, config)
        if echo and early_stop is not None:
            print(f"# {early_stop.reason}", file=sys.stderr)
        if so_far.best_epoch != so_far.epochs_done:
            best = load_checkpoint(folder.best_checkpoint)  # saved when that epoch ended; survives a resume
            load_weights_into(setup.model, best, config.model)
            if setup.average is not None:
                load_average_into(setup.average, best)
            if echo:
                print(
                    f"# keeping epoch {best.epoch} (best validation accuracy {best.best_val_accuracy:.4f}), "
                    f"not the last epoch {so_far.epochs_done}",
                    file=sys.stderr,
                )
        metrics, published = finish_run(
            setup.model,
            average=setup.average.model if setup.average is not None else None,
            folder=folder,
            config=config,
            name=name,
            data=data,
            val=split.val,
            test=split.test,
            history=so_far.history,
            best_epoch=so_far.best_epoch,
            early_stop=early_stop,
            device=device,
            repository_root=settings.model_root,
            redis_url=settings.redis_url,
        )
        barrier(processes)
        return RunResult(
            folder.path,
            "completed",
            so_far.epochs_done,
            metrics,
            published,
            best_epoch=so_far.best_epoch,
            early_stop=early_stop,
        )
    finally:
        stop_processes(processes)


# ---------------------------------------------------------------------------------------------------------
# The steps of a run, in order
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Setup:
    """What a run trains, with what, on what: fixed once the config is resolved."""

    config: TrainConfig  # resolved
    data: DatasetBundle
    split: Split
    device: torch.device
    processes: Processes
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    steps_per_epoch: int
    average: WeightAverage | None  # --ema: the moving average of the weights, validated beside them and exported


@dataclass(frozen=True)
class Progress:
    """The completed epochs' metrics rows, and the best validation accuracy among them."""

    history: list[dict[str, Any]]
    best_val_accuracy: float = -1.0
    best_epoch: int = 0  # 0: none yet

    @property
    def epochs_done(self) -> int:
        return int(self.history[-1]["epoch"]) if self.history else 0

    def better(self, val: Evaluation, row: dict[str, Any], *, loss_key: str = "val_loss") -> bool:
        """Is this epoch (its validation, its metrics row) the best so far? A higher validation accuracy
        wins; an equal one wins with a lower validation loss (``row[loss_key]``), as happens on a validation
        set of a few dozen photos, where accuracy moves in steps. Without a validation set every epoch is the
        best. With ``--ema`` the averaged weights are the ones judged (``loss_key`` "ema_val_loss")."""
        if val.labels.numel() == 0 or self.best_epoch == 0 or val.accuracy > self.best_val_accuracy:
            return True
        best_loss = self.history[self.best_epoch - 1][loss_key]
        return bool(val.accuracy == self.best_val_accuracy and row[loss_key] < best_loss)

    def patience_ran_out(self, patience: int | None) -> bool:
        """``patience`` epochs (0 or None: off) since the best one, none of them better."""
        return patience is not None and patience > 0 and self.epochs_done - self.best_epoch >= patience


def check_before_loading(config: TrainConfig, start: Pretrained | None, processes: Processes) -> None:
    """What can fail without the data, before the data is loaded."""
    resolve_optimizer_options(config.optimizer, config.optimizer_options)
    if start is not None and start.freeze_backbone_epochs and processes.distributed:
        raise InvalidHyperparameter(
            "freezing the backbone is not supported under torchrun (DistributedDataParallel fixes the set of "
            "trained parameters when it starts); fine-tune in one process"
        )


def report_skipped(data: DatasetBundle) -> None:
    if data.skipped:
        print(f"# skipped {len(data.skipped)} unreadable file(s):", file=sys.stderr)
        for path, reason in data.skipped:
            print(f"#   {path}: {reason}", file=sys.stderr)


def set_up(
    config: TrainConfig,
    data: DatasetBundle,
    split: Split,
    device: torch.device,
    processes: Processes,
    *,
    start: Pretrained | None,
) -> Setup:
    """The seeded model (from ``start``'s weights when given), its optimizer and learning-rate schedule,
    and with ``config.ema`` the moving average of its weights (starting as a copy of them)."""
    model, optimizer = build_model_and_optimizer(config, data, device)
    if start is not None:
        load_pretrained(model, start)
    average = WeightAverage(model, config.ema) if config.ema is not None else None
    steps_per_epoch = batches_per_epoch(len(split.train[1]), config.batch_size, processes.world_size)
    scheduler = build_scheduler(
        optimizer,
        config.lr_policy,
        config.lr_policy_options,
        total_iters=steps_per_epoch * config.epochs,
        warmup_iters=config.warmup_iters,
    )
    return Setup(config, data, split, device, processes, model, optimizer, scheduler, steps_per_epoch, average)


def with_new_fields(saved: dict[str, Any], config: TrainConfig) -> dict[str, Any]:
    """A checkpoint's config with the fields added to the config since it was written (``ema``, ``tta``) at
    their defaults, which is how that run trained: an older run resumes unchanged."""
    fields = type(config).model_fields
    added = {name: field.get_default(call_default_factory=True) for name, field in fields.items() if name not in saved}
    return {**added, **saved}


def resume_from(folder: RunFolder, setup: Setup) -> Progress:
    """The last checkpoint's weights, optimizer and schedule state loaded into ``setup``; its progress."""
    state = load_checkpoint(folder.last_checkpoint)
    if with_new_fields(state.config, setup.config) != setup.config.to_dict():
        raise CheckpointError(f"{folder.path}: the checkpoint was made with another config; resume it unchanged")
    load_weights_into(setup.model, state, setup.config.model)
    setup.optimizer.load_state_dict(state.optimizer)
    setup.scheduler.load_state_dict(state.scheduler)
    if setup.average is not None:
        load_average_into(setup.average, state)
    return Progress(state.history, state.best_val_accuracy, state.best_epoch)


def create_run_folder(folder: RunFolder, config: TrainConfig, *, echo: bool) -> None:
    """A new run folder holding the resolved config; an existing one is refused."""
    if folder.path.exists():
        raise OutputExists(
            f"output folder {folder.path} already exists: choose another --output-dir, or resume it with "
            f"imgcls train --resume {folder.path}"
        )
    folder.path.mkdir(parents=True)
    folder.config.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    if echo:
        print(f"# run folder: {folder.path}\n# resolved config:", file=sys.stderr)
        print(yaml.safe_dump(config.to_dict(), sort_keys=False), file=sys.stderr, end="")


def train_epochs(
    setup: Setup,
    folder: RunFolder,
    so_far: Progress,
    *,
    start: Pretrained | None,
    resume: bool,
    should_stop: Callable[[], bool],
    on_epoch: Callable[[dict[str, Any]], None] | None,
    progress: bool,
    echo: bool,
) -> tuple[Literal["completed", "interrupted"], Progress]:
    """The epochs left, each checkpointed (rank 0), until the last, early stopping, or ``should_stop``.

    A run that fails before its first checkpoint leaves no folder behind (unless it was resumed).
    """
    config, processes, model = setup.config, setup.processes, setup.model
    trained: nn.Module = DistributedDataParallel(model) if processes.distributed else model
    loss_fn = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    log = RunLog(folder, echo=echo) if processes.is_main else None
    try:
        for epoch in range(so_far.epochs_done, config.epochs):
            if so_far.patience_ran_out(config.early_stopping_patience):
                return "completed", so_far  # resumed after the run had stopped early, before it finished
            torch.manual_seed(epoch_seed(config.seed, epoch))
            if start is not None:
                set_backbone_trainable(model, start.head, epoch >= start.freeze_backbone_epochs)
            result = train_one_epoch(
                trained,
                epoch_batches(
                    config,
                    setup.data,
                    setup.split.train,
                    epoch,
                    device=setup.device,
                    rank=processes.rank,
                    world_size=processes.world_size,
                ),
                setup.optimizer,
                setup.scheduler,
                loss_fn=loss_fn,
                device=setup.device,
                amp=setup.device.type == "cuda",
                grad_clip=config.grad_clip,
                total_batches=setup.steps_per_epoch,
                description=f"epoch {epoch + 1}/{config.epochs}",
                progress=progress and processes.is_main,
                should_stop=should_stop,
                average=setup.average,
            )
            if result.stopped_early:  # the partial epoch is dropped; last.pt holds the previous one
                return "interrupted", so_far
            val = validate(setup, loss_fn, setup.model)
            ema_val = validate(setup, loss_fn, setup.average.model) if setup.average is not None else None
            row = epoch_row(epoch, setup, result, val, ema_val)
            judged = val if ema_val is None else ema_val  # the weights that will be exported
            improved = so_far.better(judged, row, loss_key="val_loss" if ema_val is None else "ema_val_loss")
            so_far = Progress(
                [*so_far.history, row],
                (judged.accuracy if judged.labels.numel() else 0.0) if improved else so_far.best_val_accuracy,
                epoch + 1 if improved else so_far.best_epoch,
            )
            patience_out = so_far.patience_ran_out(config.early_stopping_patience)
            stop_now = agree(processes, patience_out) or should_stop()
            if log is not None:
                log.epoch(row, step_losses=result.step_losses, step_rates=result.step_rates)
                save_epoch(folder, setup, so_far, improved=improved)
                if on_epoch is not None:
                    on_epoch(row)
            if stop_now:
                return ("completed" if patience_out else "interrupted"), so_far
        return "completed", so_far
    except BaseException:
        if processes.is_main and not resume:
            remove_run_dir(folder)  # only when no epoch finished: a checkpointed run stays resumable
        raise
    finally:
        if log is not None:
            log.close()
        if start is not None:
            set_backbone_trainable(model, start.head, True)


def early_stop_of(so_far: Progress, config: TrainConfig) -> EarlyStop | None:
    """Why a completed run ended before ``config.epochs``, for the run's output and result.json."""
    patience = config.early_stopping_patience
    if so_far.epochs_done >= config.epochs or not patience:
        return None
    return EarlyStop(epoch=so_far.epochs_done, best_epoch=so_far.best_epoch, patience=patience)


def validate(setup: Setup, loss_fn: nn.Module, model: nn.Module) -> Evaluation:
    batches = eval_batches(
        *setup.split.val,
        batch_size=EVAL_BATCH_SIZE,
        preprocessing=setup.data.preprocessing,
        device=setup.device,
        channels_last=uses_channels_last(setup.config),
    )
    return evaluate(model, batches, loss_fn=loss_fn, device=setup.device, amp=setup.device.type == "cuda")


def epoch_row(
    epoch: int, setup: Setup, result: EpochResult, val: Evaluation, ema_val: Evaluation | None = None
) -> dict[str, Any]:
    """One line of metrics.jsonl (and of a job's metrics): ``epoch`` counts from 1. ``val_*`` are the trained
    weights'; with ``--ema``, ``ema_val_*`` the averaged weights'."""
    validated = val.labels.numel() > 0
    averaged = {}
    if ema_val is not None:
        averaged = {
            "ema_val_loss": round(ema_val.loss, 5) if validated else None,
            "ema_val_accuracy": round(ema_val.accuracy, 5) if validated else None,
        }
    return {
        "epoch": epoch + 1,
        "step": (epoch + 1) * setup.steps_per_epoch,
        "train_loss": round(result.loss, 5),
        "train_accuracy": round(result.accuracy, 5),
        "val_loss": round(val.loss, 5) if validated else None,
        "val_accuracy": round(val.accuracy, 5) if validated else None,
        **averaged,
        "learning_rate": result.learning_rate,
        "images_per_second": round(result.images_per_second * setup.processes.world_size, 1),
        "processes": setup.processes.world_size,
        "seconds": round(result.seconds, 2),
    }


def save_epoch(folder: RunFolder, setup: Setup, so_far: Progress, *, improved: bool) -> None:
    """``last.pt`` after every epoch, ``best.pt`` too when validation improved."""
    state = Checkpoint(
        epoch=so_far.epochs_done,
        model={k: v.cpu() for k, v in setup.model.state_dict().items()},
        optimizer=setup.optimizer.state_dict(),
        scheduler=setup.scheduler.state_dict(),
        config=setup.config.to_dict(),
        labels=list(setup.data.labels),
        preprocessing=msgspec.to_builtins(setup.data.preprocessing),
        history=so_far.history,
        best_val_accuracy=so_far.best_val_accuracy,
        best_epoch=so_far.best_epoch,
        code_version=code_version(),
        ema=setup.average.state_dict() if setup.average is not None else None,
    )
    if improved:
        save_checkpoint(folder.best_checkpoint, state)
    save_checkpoint(folder.last_checkpoint, state)


def agree(processes: Processes, flag: bool) -> bool:
    """Rank 0's decision, for every rank (their validation numbers may differ in the last digits)."""
    if not processes.distributed:
        return flag
    decision = [flag]
    dist.broadcast_object_list(decision, src=0)
    return bool(decision[0])


def load_weights_into(model: nn.Module, state: Checkpoint, architecture: str) -> None:
    saved = state.config.get("model", "?")
    if saved != architecture:
        raise CheckpointError(f"the checkpoint holds a {saved} model, not {architecture}")
    model.load_state_dict(state.model)


def load_average_into(average: WeightAverage, state: Checkpoint) -> None:
    if state.ema is None:
        raise CheckpointError("the checkpoint holds no moving average of the weights (a run without --ema)")
    average.load_state_dict(state.ema)


def load_pretrained(model: nn.Module, start: Pretrained) -> None:
    """Copy ``start.weights`` into ``model``; only the head's tensors may be missing (they stay as they are).

    Raises ``CheckpointError`` naming the first missing, unexpected or differently shaped tensors.
    """
    expected = model.state_dict()
    prefix = f"{start.head}."
    missing = [key for key in expected if key not in start.weights and not key.startswith(prefix)]
    unexpected = [key for key in start.weights if key not in expected]
    mismatched = [
        f"{key} {tuple(start.weights[key].shape)} vs {tuple(value.shape)}"
        for key, value in expected.items()
        if key in start.weights and start.weights[key].shape != value.shape
    ]
    problems = [
        f"{label}: {', '.join(keys[:3])}{' …' if len(keys) > 3 else ''}"
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape weights vs model", mismatched))
        if keys
    ]
    if problems:
        raise CheckpointError("the pretrained weights do not fit the model; " + "; ".join(problems))
    model.load_state_dict({**expected, **start.weights})  # strict: every key is present


def set_backbone_trainable(model: nn.Module, head: str, trainable: bool) -> None:
    """``requires_grad`` of every parameter outside module ``head``. A frozen parameter gets no gradient,
    so the optimizers skip it altogether: no step, no weight decay, no momentum."""
    prefix = f"{head}."
    for name, parameter in model.named_parameters():
        if not name.startswith(prefix):
            parameter.requires_grad_(trainable)


def model_name_for(dataset: str) -> str:
    """A repository name from a dataset spec: 'fashion-mnist', 'digits', 'folder:/x/Flowers' -> 'flowers'."""
    base = Path(dataset.removeprefix("folder:")).name if dataset.startswith("folder:") else dataset
    cleaned = "".join(c if c.isalnum() or c in "._-" else "-" for c in base.lower()).strip("-._")
    return cleaned or "model"


def preprocessing_of(state: Checkpoint) -> Preprocessing:
    return msgspec.convert(state.preprocessing, Preprocessing)


def remove_run_dir(folder: RunFolder) -> None:
    """Used when a run fails before its first checkpoint: nothing half-made stays behind."""
    if folder.path.exists() and not folder.last_checkpoint.exists():
        shutil.rmtree(folder.path)


if __name__ == "__main__":  # torchrun -m training.train [imgcls train options]
    from service.cli import main

    main(["train", *sys.argv[1:]])
