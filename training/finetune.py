"""Fine-tuning: a published version's weights, trained further on an ImageFolder dataset, published anew.

A fine-tune is ``training.train.run`` with three differences: the dataset is decoded into the base model's
input (its color mode, size and mean/std, so the new version is served exactly like the base), the model
starts from the base's ``weights.pt`` (``Pretrained``) with a new head when the labels differ, and the
backbone is frozen for the first epochs and then trained at ``backbone_lr_multiplier`` times the head's
rate. Label smoothing, early stopping, the best validation epoch kept (its weights are published, not the
last epoch's), calibration, the test, the ONNX export with its parity check: all ``run``'s own.

A job runs in named steps, each under ``job_lock`` on its trial folder (``TrialFolder``: job.json, run/,
published.json). The worker runs them as separate tasks; ``fine_tune`` runs them in a row
(``imgcls fine-tune``):

    prepare        resolve the base (an alias once) and verify its files, decode the dataset into its
                   input, choose the name to publish under, write job.json (or read it back and check it)
    train_trial    train (or resume from run/checkpoints/last.pt, or find training done): run/result.json
    publish_trial  from job.json and run/result.json alone (no base hashing, no decoding): publish the
                   version once, then ``settle``: production when it earns it, and servers told

Running a step again (a redelivered task) picks up where the last call stopped: training resumes from the
last checkpoint, and publishing returns the version already published (found through ``published.json``,
or through the ``lineage.job_id`` of the repository's versions when the process died between the two).
A job publishes at most one version.

Naming: the new version is published under the base's name when the dataset's labels are the base's
labels (same names, same order); otherwise under ``<base>-<dataset id>``, so clients of the base model
never see its label set change. ``publish_name`` overrides it; a name whose latest version has other
labels is refused either way.
"""

import contextlib
import fcntl
import logging
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import msgspec
import torch

from service.files import write_json_atomic
from service.jobs.hyperparameters import FineTuneConfig
from service.jobs.record import AutoPromote
from service.repository import Lineage, Manifest, ModelNotFound, ModelRepository, Preprocessing, VersionRef, notify
from service.repository.run_folder import FinishedRun, TrialFolder
from service.repository.store import NAME_PATTERN, PRODUCTION, WEIGHTS_FILE, check_name
from service.rollouts.errors import RolloutConflict
from service.rollouts.jobs import shadow_new_version
from training.config import TrainConfig
from training.data import DatasetBundle, load_image_folder, train_val_split
from training.data.datasets import (
    FOLDER_MIN_IMAGES_PER_CLASS,
    FOLDER_PREFIX,
    FOLDER_TEST_FRACTION,
    PHOTO_BACKGROUND,
    augment_for_photos,
)
from training.errors import InvalidHyperparameter, TrainingError
from training.models import create_model, head_of, load_weights
from training.settings import TrainingSettings
from training.train import Pretrained, model_name_for, resolve_augment, resolve_config, run, split_dataset

# filled in by training.train.resolve_augment and resolve_config
log = logging.getLogger(__name__)

RESOLVED = ("augment", "weight_decay", "optimizer_options", "lr_policy_options")
DATASET_PREFIX = "dataset:"


class IncompatibleBase(TrainingError):
    """The base version cannot be fine-tuned as asked: no weights.pt, or a name that holds other labels."""


class JobRunning(TrainingError):
    """Another process is running the same job (in the same job folder) right now."""


# ---------------------------------------------------------------------------------------------------------
# Hyperparameters (FineTuneConfig is defined in service/jobs/, where the API checks a job's)
# ---------------------------------------------------------------------------------------------------------


def train_config_for(config: FineTuneConfig, *, architecture: str, dataset_dir: Path, name: str) -> TrainConfig:
    """The ``run`` config of a fine-tune: the job's values of the shared hyperparameters (the fields both
    configs have, from ``service.jobs.hyperparameters.Hyperparameters``), the base's architecture, and the
    head at the full rate, the backbone at ``backbone_lr_multiplier`` times it."""
    return TrainConfig(
        **config.model_dump(include=set(TrainConfig.model_fields)),
        model=architecture,
        dataset=f"{FOLDER_PREFIX}{dataset_dir}",
        name=name,
        lr_multipliers={head_of(architecture): 1.0, "*": config.backbone_lr_multiplier},  # first match wins
        publish=False,  # fine_tune publishes, with the job's lineage
    )


# ---------------------------------------------------------------------------------------------------------
# Data in the base model's input
# ---------------------------------------------------------------------------------------------------------


def input_preprocessing(base: Preprocessing) -> Preprocessing:
    """The base's eval transform, kept for the new version so the service feeds both the same way.

    Two changes for bases published before every dataset declared them. ``resize`` unset (the base takes
    images at its input size only): ``resize`` = the longer input side, so a dataset's larger images are
    scaled down rather than cropped; images already at the input size pass unchanged. ``background`` unset:
    ``PHOTO_BACKGROUND``, so the dataset's photos with transparency are composited, in training and at
    serving alike; opaque images decode exactly as for the base.
    """
    resize = max(base.input_size) if base.resize is None else base.resize
    background = PHOTO_BACKGROUND if base.background is None else base.background
    return msgspec.structs.replace(base, resize=resize, background=background)


def load_folder_as(root: Path, preprocessing: Preprocessing, *, name: str, seed: int) -> DatasetBundle:
    """An ImageFolder tree decoded with ``preprocessing`` (mean/std included), 20 % held out for the test as
    ``imgcls train`` holds it out of folder datasets."""
    data = load_image_folder(
        root.expanduser().resolve(), preprocessing=preprocessing, min_images_per_class=FOLDER_MIN_IMAGES_PER_CLASS
    )
    train, test = train_val_split(data.targets, val_fraction=FOLDER_TEST_FRACTION, seed=seed)
    return DatasetBundle(
        name=name,
        labels=data.labels,
        train_images=data.images[train],
        train_labels=data.targets[train],
        test_images=data.images[test],
        test_labels=data.targets[test],
        preprocessing=preprocessing,
        flip_ok=True,
        default_augment=augment_for_photos(preprocessing),
        skipped=data.skipped,
    )


# ---------------------------------------------------------------------------------------------------------
# The job and its records
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FineTuneJob:
    """What a job asks for: the same on every delivery of it."""

    job_id: str
    base: str  # a model name
    base_version: int | str | None  # a number, an alias, or None: production
    dataset_dir: Path  # an ImageFolder tree
    dataset_id: str | None  # a stored dataset's id (recorded as dataset:<id>); None: the folder's path
    dataset_sha256: str | None  # of the dataset's archive, for the lineage
    config: FineTuneConfig  # as given
    publish_name: str | None = None  # default: see the module docstring

    @property
    def dataset(self) -> str:
        """The dataset as the lineage names it."""
        if self.dataset_id:
            return f"{DATASET_PREFIX}{self.dataset_id}"
        return f"{FOLDER_PREFIX}{self.dataset_dir.resolve()}"


class JobRecord(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``job.json``: what the first delivery decided, so later ones continue the same job."""

    job_id: str
    base_model: str
    base_version: int
    dataset: str  # "dataset:<id>", or "folder:<path>" without an id
    dataset_sha256: str | None
    name: str  # published under
    requested: dict[str, Any]  # the hyperparameters as given
    config: dict[str, Any]  # resolved


@dataclass(frozen=True)
class PreparedTrial:
    """A trial ready to train: its folder, record, verified base and decoded data."""

    folder: TrialFolder
    record: JobRecord
    base: Manifest
    data: DatasetBundle  # in the base's input
    train_config: TrainConfig  # resolved
    resolved: FineTuneConfig
    new_head: bool  # the dataset's labels are not the base's


@dataclass(frozen=True)
class TrialOutcome:
    status: Literal["completed", "stopped"]  # stopped: should_stop() said so; train again to resume
    epochs_completed: int
    metrics: dict[str, float]  # test_accuracy, val_accuracy, ece, ...; empty unless completed


@dataclass(frozen=True)
class Published:
    version: VersionRef
    promoted: bool  # production names it (a new name's first version always becomes production)
    metrics: dict[str, float]  # the manifest's


@dataclass(frozen=True)
class FineTuneResult:
    status: Literal["completed", "stopped"]  # stopped: should_stop() said so; call again to resume
    base: VersionRef  # the version fine-tuned from
    config: FineTuneConfig  # resolved
    epochs_completed: int
    metrics: dict[str, float]  # test_accuracy, val_accuracy, ece, ...; empty unless completed
    published: VersionRef | None
    promoted: bool  # production names the new version (a new name's first version always becomes production)
    run_dir: Path


# ---------------------------------------------------------------------------------------------------------
# A whole job in this process
# ---------------------------------------------------------------------------------------------------------


def fine_tune(
    job: FineTuneJob,
    folder: TrialFolder,
    settings: TrainingSettings,
    *,
    auto_promote: AutoPromote = False,
    min_accuracy: float | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    echo: bool = False,
) -> FineTuneResult:
    """Prepare, train and publish ``job`` in ``folder``: one version in ``settings.model_root`` with lineage
    (base version, dataset and its sha256, job id, the resolved hyperparameters). With ``auto_promote``,
    and a test accuracy (on the 20 % of the dataset held out) of at least ``min_accuracy`` when one is
    given, the version becomes ``production``; running servers are told at once (``settings.redis_url``).

    ``should_stop`` is polled after every batch and once more before publishing; a stop returns status
    "stopped" with nothing published, and calling again with the same folder resumes. ``on_epoch`` gets
    each completed epoch's metrics (on a resume, only the new epochs').

    Raises, before anything trains: ``InvalidHyperparameter`` / ``UnknownOptimizer`` / ``UnknownPolicy``
    for hyperparameters that cannot run, ``ModelNotFound`` / ``VersionNotFound`` / ``AliasNotFound`` /
    ``CorruptVersion`` for the base, ``IncompatibleBase``, ``UnusableData`` for unusable images,
    ``JobRunning`` while another process runs the job, and ``TrainingError`` when the folder belongs to
    another job.
    """
    if min_accuracy is not None and not 0.0 <= min_accuracy <= 1.0:
        raise InvalidHyperparameter(f"min_accuracy is a test accuracy between 0 and 1, got {min_accuracy}")
    repository = ModelRepository(settings.model_root)
    with job_lock(folder, job.job_id):  # one delivery at a time; a second one fails at once
        record = read_job(folder)
        if record is not None:
            check_same_job(record, job)
        if record is None or already_published(repository, folder, record) is None:
            trial = prepare(job, folder, repository)
            trained = train_trial(trial, repository, settings, should_stop=should_stop, on_epoch=on_epoch, echo=echo)
            if trained.status == "stopped":
                return FineTuneResult(
                    "stopped",
                    base_of(repository, trial.record),
                    trial.resolved,
                    trained.epochs_completed,
                    {},
                    None,
                    False,
                    folder.run.path,
                )
            record = trial.record
        published = publish_trial(
            folder,
            repository,
            auto_promote=auto_promote,
            min_accuracy=min_accuracy,
            redis_url=settings.redis_url,
            should_stop=should_stop,
        )
        base, config = base_of(repository, record), FineTuneConfig(**record.config)
        if published is None:
            epochs = folder.run.read_result().epochs
            return FineTuneResult("stopped", base, config, epochs, {}, None, False, folder.run.path)
        epochs = int(published.metrics.get("epochs", 0))
        return FineTuneResult(
            "completed", base, config, epochs, published.metrics, published.version, published.promoted, folder.run.path
        )


def base_of(repository: ModelRepository, record: JobRecord) -> VersionRef:
    return VersionRef(
        record.base_model, record.base_version, repository.root / record.base_model / str(record.base_version)
    )


# ---------------------------------------------------------------------------------------------------------
# The steps (each called under job_lock)
# ---------------------------------------------------------------------------------------------------------


def prepare(job: FineTuneJob, folder: TrialFolder, repository: ModelRepository) -> PreparedTrial:
    """The base (resolved once, then as job.json says) with its files checked against their sha256, the
    dataset decoded into its input, the hyperparameters resolved as ``run`` resolves them; job.json
    written on the first call. Raises what ``fine_tune`` lists before anything trains."""
    record = read_job(folder)
    if record is not None:
        check_same_job(record, job)
    version = record.base_version if record else repository.resolve(job.base, job.base_version)
    base = repository.verify(job.base, version)
    if base.weights_sha256 is None:
        raise IncompatibleBase(f"{job.base} v{version} was published without {WEIGHTS_FILE}; it cannot be fine-tuned")
    data = load_folder_as(
        job.dataset_dir, input_preprocessing(base.preprocessing), name=job.dataset, seed=job.config.seed
    )
    new_head = data.labels != base.labels
    name = (
        record.name
        if record
        else target_name(
            repository,
            job.base,
            data.labels,
            job.dataset_id or job.dataset_dir.name,
            given=job.publish_name,
            new_head=new_head,
        )
    )
    train_config = train_config_for(
        job.config, architecture=base.architecture, dataset_dir=job.dataset_dir.resolve(), name=name
    )
    train_config = resolve_config(
        resolve_augment(train_config, data), train_images=len(split_dataset(data, train_config).train[1]), world_size=1
    )
    resolved = job.config.model_copy(update={key: getattr(train_config, key) for key in RESOLVED})
    if record is None:
        record = JobRecord(
            job.job_id,
            job.base,
            version,
            job.dataset,
            job.dataset_sha256,
            name,
            requested=job.config.to_dict(),
            config=resolved.to_dict(),
        )
        write_json_atomic(folder.job, msgspec.to_builtins(record))
    return PreparedTrial(folder, record, base, data, train_config, resolved, new_head)


def train_trial(
    trial: PreparedTrial,
    repository: ModelRepository,
    settings: TrainingSettings,
    *,
    should_stop: Callable[[], bool],
    on_epoch: Callable[[dict[str, Any]], None] | None,
    echo: bool,
) -> TrialOutcome:
    """Train the trial (resumed from its last checkpoint, or skipped when a previous delivery finished
    training). "stopped" when ``should_stop`` said so, during training or once it was done (cancelled
    while calibrating and exporting)."""
    run_folder = trial.folder.run
    if not run_folder.finished:
        head = head_of(trial.base.architecture)
        weights = base_weights(repository, trial.base, drop=head if trial.new_head else None)
        resume = run_folder.last_checkpoint.is_file()
        if not resume and run_folder.path.exists():
            shutil.rmtree(run_folder.path)  # left by a process that died before the first epoch ended
        config = trial.resolved
        try:
            result = run(
                trial.train_config,
                settings=settings,
                output_dir=run_folder.path,
                resume=resume,
                should_stop=should_stop,
                progress=False,
                echo=echo,
                data=trial.data,
                on_epoch=on_epoch,
                start=Pretrained(weights, head=head, freeze_backbone_epochs=config.freeze_backbone_epochs),
            )
        except BaseException:
            if not run_folder.path.exists():  # failed before training began (run removed its folder): forget the job
                trial.folder.job.unlink(missing_ok=True)
            raise
        if result.status == "interrupted":
            return TrialOutcome("stopped", result.epochs_completed, {})
    finished = run_folder.read_result()
    if should_stop():
        return TrialOutcome("stopped", finished.epochs, {})
    return TrialOutcome("completed", finished.epochs, finished.metrics)


def publish_trial(
    folder: TrialFolder,
    repository: ModelRepository,
    *,
    auto_promote: AutoPromote,
    min_accuracy: float | None,
    redis_url: str | None,
    should_stop: Callable[[], bool],
) -> Published | None:
    """Publish the trial's finished run (once), then ``settle`` it (once); reads job.json and
    run/result.json only. None: ``should_stop`` said so before anything was published."""
    record = read_job(folder)
    if record is None:
        raise TrainingError(f"{folder.path} holds no fine-tuning job ({folder.job.name}): train the trial first")
    done = already_published(repository, folder, record)
    if done is not None:
        ref, promoted = done
    else:
        finished = folder.run.read_result()
        if should_stop():  # cancelled after training: publish nothing
            return None
        run = folder.run
        report = run.report if run.report.is_file() else None  # every run has one, but those finished before reports
        explain = run.explain if finished.explain is not None else None
        ref = repository.publish(job_manifest(finished, record, folder), run.model, run.weights, report, explain)
        write_json_atomic(folder.published, {"name": ref.name, "version": ref.version, "promoted": None})
        promoted = None
    if promoted is None:
        promoted = settle(
            repository,
            folder,
            ref,
            auto_promote=auto_promote,
            min_accuracy=min_accuracy,
            redis_url=redis_url,
            job_id=record.job_id,
        )
    return Published(ref, promoted, repository.manifest(ref.name, ref.version).metrics)


def settle(
    repository: ModelRepository,
    folder: TrialFolder,
    ref: VersionRef,
    *,
    auto_promote: AutoPromote,
    min_accuracy: float | None,
    redis_url: str | None,
    job_id: str = "",
) -> bool:
    """After publishing: production for a new name's first version, or (``auto_promote``) for a version that
    passes the accuracy gate; with ``auto_promote="shadow"`` such a version is shadowed on live traffic
    instead, and the rollout's gate promotes it later (service/rollouts/jobs.py; False is recorded). Servers
    are told of the new version either way; the outcome is recorded. Safe to repeat."""
    accuracy = repository.manifest(ref.name, ref.version).metrics["test_accuracy"]
    production = repository.aliases(ref.name).get(PRODUCTION)
    passes = bool(auto_promote) and (min_accuracy is None or accuracy >= min_accuracy)
    first = production in (None, ref.version)  # (ref.version: a previous attempt promoted it)
    if passes and auto_promote == "shadow" and not first:
        try:
            shadow_new_version(repository, ref.name, ref.version, job_id=job_id, redis_url=redis_url)
        except RolloutConflict as error:  # another rollout runs: the version waits to be promoted by hand
            log.warning("job %s: no shadow rollout of %s v%s: %s", job_id, ref.name, ref.version, error)
        passes = False
    promoted = first or passes
    if promoted:
        by = f"fine-tuning job {job_id}"
        reason = f"test accuracy {accuracy:.4f}" if passes else "the model's first version"
        notify.promote(repository, ref.name, ref.version, redis_url=redis_url, by=by, reason=reason)
    else:
        notify.announce_change(redis_url, ref.name)  # a new version to list
    write_json_atomic(folder.published, {"name": ref.name, "version": ref.version, "promoted": promoted})
    return promoted


# ---------------------------------------------------------------------------------------------------------
# Parts of the steps
# ---------------------------------------------------------------------------------------------------------


def base_weights(repository: ModelRepository, manifest: Manifest, *, drop: str | None) -> dict[str, torch.Tensor]:
    """The base's ``weights.pt`` (``weights_only=True``, checked strictly against its architecture), without
    the tensors of module ``drop`` (the head being replaced)."""
    model = create_model(
        manifest.architecture, in_channels=manifest.preprocessing.channels, num_classes=len(manifest.labels)
    )
    load_weights(model, repository.path(manifest.name, manifest.version) / WEIGHTS_FILE)
    return {key: value for key, value in model.state_dict().items() if drop is None or not key.startswith(f"{drop}.")}


def target_name(
    repository: ModelRepository, base: str, labels: tuple[str, ...], dataset: str, *, given: str | None, new_head: bool
) -> str:
    """Where the new version goes (see the module docstring); refuses a name whose latest version has other
    labels."""
    if given is not None:
        name = check_name("model name", given)
    elif not new_head:
        name = base
    else:
        suffix = model_name_for(dataset)
        name = f"{base[: 63 - len(suffix)].rstrip('-._')}-{suffix}"
        if not NAME_PATTERN.match(name):
            raise IncompatibleBase(f"cannot derive a model name from {base!r} and {dataset!r}; give publish_name")
    try:
        versions = repository.versions(name)
    except ModelNotFound:
        return name
    if versions:
        existing = repository.manifest(name, versions[-1]).labels
        if existing != labels:
            raise IncompatibleBase(
                f"{name} v{versions[-1]} classifies {', '.join(existing)}; this dataset's labels are "
                f"{', '.join(labels)}: publish under another name"
                + ("" if given is None else " (or leave publish_name unset for a derived one)")
            )
    return name


def job_manifest(result: FinishedRun, record: JobRecord, folder: TrialFolder) -> Manifest:
    lineage = Lineage(
        dataset=record.dataset,
        config=result.config,  # the full training config (a TrainConfig)
        run_dir=str(folder.run.path.resolve()),
        base_model=record.base_model,
        base_version=record.base_version,
        dataset_sha256=record.dataset_sha256,
        job_id=record.job_id,
        fine_tune=record.config,
    )
    return result.manifest(name=record.name, run_dir=folder.run.path, lineage=lineage)


def already_published(
    repository: ModelRepository, folder: TrialFolder, record: JobRecord
) -> tuple[VersionRef, bool | None] | None:
    """The version this job published and whether it was promoted (None: not decided yet), or None."""
    if folder.published.is_file():
        done = msgspec.json.decode(folder.published.read_bytes(), type=PublishedRecord)
        return VersionRef(done.name, done.version, repository.path(done.name, done.version)), done.promoted
    try:
        versions = repository.versions(record.name)
    except ModelNotFound:
        return None
    for version in reversed(versions):  # the process died between publishing and writing published.json
        if repository.manifest(record.name, version).lineage.job_id == record.job_id:
            write_json_atomic(folder.published, {"name": record.name, "version": version, "promoted": None})
            return VersionRef(record.name, version, repository.path(record.name, version)), None
    return None


class PublishedRecord(msgspec.Struct, frozen=True):
    """A trial folder's ``published.json``."""

    name: str
    version: int
    promoted: bool | None  # None: published, promotion not decided yet


@contextlib.contextmanager
def job_lock(folder: TrialFolder, job_id: str) -> Iterator[None]:
    """An exclusive lock on the job folder for as long as a delivery runs (released when the process dies)."""
    folder.path.mkdir(parents=True, exist_ok=True)
    with folder.lock.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise JobRunning(f"job {job_id} is running in another process ({folder.path} is locked)") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def read_job(folder: TrialFolder) -> JobRecord | None:
    if not folder.job.is_file():
        return None
    try:
        return msgspec.json.decode(folder.job.read_bytes(), type=JobRecord)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise TrainingError(f"{folder.job} is not a fine-tuning job record: {exc}") from exc


def check_same_job(record: JobRecord, job: FineTuneJob) -> None:
    given = job.config.to_dict()
    same_ids = (record.job_id, record.base_model, record.dataset) == (job.job_id, job.base, job.dataset)
    if not same_ids or given not in (record.requested, record.config):
        raise TrainingError(
            f"the job folder holds job {record.job_id} (base {record.base_model}, {record.dataset}) with other "
            f"hyperparameters or ids than job {job.job_id}: give each job its own output folder"
        )
