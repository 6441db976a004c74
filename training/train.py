"""One training run: data → model → parameter updates → calibrate → test → export → publish.

``run(config, ...)`` is what ``imgcls train`` calls, and what ``training.finetune`` builds on (with the
data already loaded and a ``Pretrained`` start). It is also the torchrun entry point:
``torchrun --nproc-per-node 2 -m training.train --epochs 2 ...`` takes the same options as
``imgcls train``; every process trains, rank 0 alone writes the run folder and publishes.

Run folder (``--output-dir``, default ``<runs_dir>/<name>-<UTC time>``)::

    config.yaml               the resolved config
    checkpoints/last.pt       after every epoch (resume from here)
    checkpoints/best.pt       best validation accuracy so far
    metrics.jsonl, tensorboard/, curves.png, confusion_matrix.png
    model.onnx, weights.pt, result.json    (when the run completes)
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
from service.version import code_version
from training.assemble import build_model_and_optimizer, uses_channels_last
from training.batches import EVAL_BATCH_SIZE, batches_per_epoch, eval_batches, training_batches
from training.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from training.config import TrainConfig
from training.data import DatasetBundle, load_dataset, train_val_split
from training.distributed import Processes, barrier, pick_device, start_processes, stop_processes
from training.engine import evaluate, train_one_epoch
from training.errors import CheckpointError, InvalidHyperparameter, OutputExists
from training.finish import finish_run
from training.optim import (
    build_scheduler,
    resolve_optimizer_options,
    resolve_policy_options,
    takes_weight_decay,
)
from training.reporting import RunLog
from training.settings import TrainingSettings

DEFAULT_WEIGHT_DECAY = 5e-4


@dataclass(frozen=True)
class RunResult:
    run_dir: Path
    status: Literal["completed", "interrupted"]
    epochs_completed: int
    metrics: dict[str, float]  # empty unless completed
    published: VersionRef | None
    rank: int = 0  # under torchrun, which process this is; only rank 0 reports


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
    if config.optimizer == "ftrl" and (config.lr_policy != "fixed" or config.warmup_iters):
        raise InvalidHyperparameter(
            "ftrl needs --lr-policy fixed and no warmup: FTRL computes each weight in closed form from its state, "
            "w = -(z - sign(z)·l1) / ((beta + sqrt(n)) / learning_rate + l2), so a changing rate rescales every "
            "weight (a decaying one shrinks the network to zero)"
        )
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
    """One epoch of shuffled (and, when ``config.augment``, augmented) batches, as every tool trains on them."""
    return training_batches(
        *train,
        batch_size=config.batch_size,
        generator=torch.Generator().manual_seed(epoch_seed(config.seed, epoch)),
        preprocessing=data.preprocessing,
        crop_padding=config.crop_padding if config.augment else None,
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
    keep_best: bool = True,
) -> RunResult:
    """Train, and when the run completes, calibrate, test, export and (if ``config.publish``) publish.

    Everything that can be checked is checked before the run folder is created: names, options,
    data files. ``should_stop`` is polled after every batch; a stop keeps the last completed epoch's
    checkpoint, and ``run(..., output_dir=same, resume=True)`` continues exactly from it.

    ``data``: already loaded (fine-tuning decodes with the base model's preprocessing); default: load
    ``config.dataset``. ``start``: begin from these weights (ignored on resume: the checkpoint has them).
    ``on_epoch``: called with each epoch's metrics row once its checkpoint is saved (rank 0 only).
    ``keep_best``: finish with the weights of the epoch with the best validation accuracy (else the last
    epoch's; a validation set of a few dozen images picks an epoch by noise).
    """
    device = pick_device(config.device)
    processes = start_processes(device)
    try:
        return _run(
            config, settings, device, processes, output_dir, resume, should_stop, progress, echo,
            data=data, start=start, on_epoch=on_epoch, keep_best=keep_best,
        )  # fmt: skip
    finally:
        stop_processes(processes)


def _run(
    config: TrainConfig,
    settings: TrainingSettings,
    device: torch.device,
    processes: Processes,
    output_dir: Path | None,
    resume: bool,
    should_stop: Callable[[], bool],
    progress: bool,
    echo: bool,
    *,
    data: DatasetBundle | None,
    start: Pretrained | None,
    on_epoch: Callable[[dict[str, Any]], None] | None,
    keep_best: bool,
) -> RunResult:
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    resolve_optimizer_options(config.optimizer, config.optimizer_options)  # fail before loading data
    if start is not None and start.freeze_backbone_epochs and processes.distributed:
        raise InvalidHyperparameter(
            "freezing the backbone is not supported under torchrun (DistributedDataParallel fixes the set of "
            "trained parameters when it starts); fine-tune in one process"
        )
    if data is None:
        data = load_dataset(
            config.dataset,
            fashion_mnist_dir=settings.fashion_mnist_dir,
            image_size=config.image_size,
            seed=config.seed,
        )
    if data.skipped and echo and processes.is_main:
        print(f"# skipped {len(data.skipped)} unreadable file(s):", file=sys.stderr)
        for path, reason in data.skipped:
            print(f"#   {path}: {reason}", file=sys.stderr)
    split = split_dataset(data, config)
    config = resolve_config(config, train_images=len(split.train[1]), world_size=processes.world_size)
    name = config.name or model_name_for(data.name)
    cuda = device.type == "cuda"

    model, optimizer = build_model_and_optimizer(config, data, device)
    if start is not None and not resume:
        load_pretrained(model, start)
    channels_last = uses_channels_last(config)
    steps_per_epoch = batches_per_epoch(len(split.train[1]), config.batch_size, processes.world_size)
    scheduler = build_scheduler(
        optimizer,
        config.lr_policy,
        config.lr_policy_options,
        total_iters=steps_per_epoch * config.epochs,
        warmup_iters=config.warmup_iters,
    )

    run_dir = output_dir or default_run_dir(settings, config, name)
    start_epoch, history, best = 0, [], (-1.0, 0)
    if resume:
        state = load_checkpoint(run_dir / "checkpoints" / "last.pt")
        if state.config != config.to_dict():
            raise CheckpointError(f"{run_dir}: the checkpoint was made with another config; resume it unchanged")
        load_weights_into(model, state, config.model)
        optimizer.load_state_dict(state.optimizer)
        scheduler.load_state_dict(state.scheduler)
        start_epoch, history, best = state.epoch, state.history, (state.best_val_accuracy, state.best_epoch)
    elif processes.is_main:
        if run_dir.exists():
            raise OutputExists(
                f"output folder {run_dir} already exists: choose another --output-dir, or resume it with "
                f"imgcls train --resume {run_dir}"
            )
        run_dir.mkdir(parents=True)
        (run_dir / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
        if echo:
            print(f"# run folder: {run_dir}\n# resolved config:", file=sys.stderr)
            print(yaml.safe_dump(config.to_dict(), sort_keys=False), file=sys.stderr, end="")
    barrier(processes)

    trained: nn.Module = DistributedDataParallel(model) if processes.distributed else model
    loss_fn = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    log = RunLog(run_dir, echo=echo) if processes.is_main else None
    status: Literal["completed", "interrupted"] = "completed"
    try:
        for epoch in range(start_epoch, config.epochs):
            torch.manual_seed(epoch_seed(config.seed, epoch))
            if start is not None:
                set_backbone_trainable(model, start.head, epoch >= start.freeze_backbone_epochs)
            batches = epoch_batches(
                config, data, split.train, epoch, device=device, rank=processes.rank, world_size=processes.world_size
            )
            result = train_one_epoch(
                trained,
                batches,
                optimizer,
                scheduler,
                loss_fn=loss_fn,
                device=device,
                amp=cuda,
                grad_clip=config.grad_clip,
                total_batches=steps_per_epoch,
                description=f"epoch {epoch + 1}/{config.epochs}",
                progress=progress and processes.is_main,
                should_stop=should_stop,
            )
            if result.stopped_early:  # the partial epoch is dropped; last.pt holds the previous one
                status = "interrupted"
                break
            val = evaluate(
                model, eval_batches(*split.val, batch_size=EVAL_BATCH_SIZE, preprocessing=data.preprocessing,
                                    device=device, channels_last=channels_last),
                loss_fn=loss_fn, device=device, amp=cuda,
            )  # fmt: skip
            row = {
                "epoch": epoch + 1,
                "step": (epoch + 1) * steps_per_epoch,
                "train_loss": round(result.loss, 5),
                "train_accuracy": round(result.accuracy, 5),
                "val_loss": None if val.labels.numel() == 0 else round(val.loss, 5),
                "val_accuracy": None if val.labels.numel() == 0 else round(val.accuracy, 5),
                "learning_rate": result.learning_rate,
                "images_per_second": round(result.images_per_second * processes.world_size, 1),
                "processes": processes.world_size,
                "seconds": round(result.seconds, 2),
            }
            history = [*history, row]
            improved = val.labels.numel() == 0 or val.accuracy > best[0]
            if improved:
                best = (val.accuracy if val.labels.numel() else 0.0, epoch + 1)
            patience_out = (
                config.early_stopping_patience is not None and epoch + 1 - best[1] >= config.early_stopping_patience
            )
            stop_now = agree(processes, patience_out) or should_stop()
            if log is not None:
                log.epoch(row, step_losses=result.step_losses, step_rates=result.step_rates)
                state = Checkpoint(
                    epoch=epoch + 1,
                    model={k: v.cpu() for k, v in model.state_dict().items()},
                    optimizer=optimizer.state_dict(),
                    scheduler=scheduler.state_dict(),
                    config=config.to_dict(),
                    labels=list(data.labels),
                    preprocessing=msgspec.to_builtins(data.preprocessing),
                    history=history,
                    best_val_accuracy=best[0],
                    best_epoch=best[1],
                    code_version=code_version(),
                )
                if improved:
                    save_checkpoint(run_dir / "checkpoints" / "best.pt", state)
                save_checkpoint(run_dir / "checkpoints" / "last.pt", state)
                if on_epoch is not None:
                    on_epoch(row)
            if stop_now:
                if not patience_out:
                    status = "interrupted"
                break
    except BaseException:
        if processes.is_main and not resume:
            remove_run_dir(run_dir)  # only when no epoch finished: a checkpointed run stays resumable
        raise
    finally:
        if log is not None:
            log.close()
        if start is not None:
            set_backbone_trainable(model, start.head, True)

    epochs_done = history[-1]["epoch"] if history else 0
    if status == "interrupted" or not processes.is_main:
        barrier(processes)
        return RunResult(run_dir, status, epochs_done, {}, None, rank=processes.rank)
    if keep_best and best[1] != epochs_done and (run_dir / "checkpoints" / "best.pt").exists():
        load_weights_into(model, load_checkpoint(run_dir / "checkpoints" / "best.pt"), config.model)
    metrics, published = finish_run(
        model,
        run_dir=run_dir,
        config=config,
        name=name,
        data=data,
        val=split.val,
        test=split.test,
        history=history,
        device=device,
        repository_root=settings.model_root,
    )
    barrier(processes)
    return RunResult(run_dir, "completed", epochs_done, metrics, published)


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


def remove_run_dir(run_dir: Path) -> None:
    """Used when a run fails before its first checkpoint: nothing half-made stays behind."""
    if run_dir.exists() and not (run_dir / "checkpoints" / "last.pt").exists():
        shutil.rmtree(run_dir)


if __name__ == "__main__":  # torchrun -m training.train [imgcls train options]
    from training.cli import main

    main(["train", *sys.argv[1:]])
