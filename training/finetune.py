"""Fine-tuning: a published version's weights, trained further on an ImageFolder dataset, published anew.

``fine_tune(...)`` is the domain function a fine-tuning job runs (the Celery task passes its job's ids and
records the outcome). It is ``training.train.run`` with three differences: the dataset is decoded into the
base model's input (its color mode, size and mean/std, so the new version is served exactly like the
base), the model starts from the base's ``weights.pt`` (``Pretrained``) with a new head when the labels
differ, and the backbone is frozen for the first epochs and then trained at ``backbone_lr_multiplier``
times the head's rate. Calibration, the test, the ONNX export with its parity check: all ``run``'s own.

Job folder (``output_dir``: one per job, the same on every delivery of it)::

    job.json         the job as it started: base version (an alias is resolved once), dataset, name,
                     hyperparameters as given and resolved
    run/             training.train.run's folder: checkpoints/last.pt after every epoch, metrics.jsonl,
                     plots, model.onnx, weights.pt, result.json (when training completed)
    published.json   the version this job published, then whether it was promoted

Calling ``fine_tune`` again with the same ``output_dir`` and job id (a redelivered task) picks up where the
last call stopped: it resumes training from ``run/checkpoints/last.pt``, publishes a completed run that was
not published yet, or returns the version already published (found through ``published.json``, or through
the ``lineage.job_id`` of the repository's versions when the process died between the two). A job
publishes at most one version.

Naming: the new version is published under the base's name when the dataset's labels are the base's
labels (same names, same order); otherwise under ``<base>-<dataset id>``, so clients of the base model
never see its label set change. ``publish_name`` overrides it; a name whose latest version has other
labels is refused either way.
"""

import contextlib
import fcntl
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import msgspec
import torch

from service.jobs.hyperparameters import FineTuneConfig
from service.repository import Lineage, Manifest, ModelNotFound, ModelRepository, Preprocessing, VersionRef
from service.repository.notify import announce_change
from service.repository.store import NAME_PATTERN, PRODUCTION, WEIGHTS_FILE, check_name
from training.config import TrainConfig
from training.data import DatasetBundle, load_image_folder, train_val_split
from training.data.datasets import FOLDER_MIN_IMAGES_PER_CLASS, FOLDER_PREFIX, FOLDER_TEST_FRACTION
from training.errors import InvalidHyperparameter, TrainingError
from training.models import create_model, head_of, load_weights
from training.publish import PUBLISHED_FILE, RESULT_FILE, manifest_from_result, read_result
from training.settings import TrainingSettings
from training.train import Pretrained, model_name_for, resolve_config, run, split_dataset

JOB_FILE = "job.json"
RESOLVED = ("weight_decay", "optimizer_options", "lr_policy_options")  # filled in by training.train.resolve_config
RUN_DIR = "run"
DATASET_PREFIX = "dataset:"


class IncompatibleBase(TrainingError):
    """The base version cannot be fine-tuned as asked: no weights.pt, or a name that holds other labels."""


class JobRunning(TrainingError):
    """Another process is running the same job (in the same job folder) right now."""


# ---------------------------------------------------------------------------------------------------------
# Hyperparameters (FineTuneConfig is defined in service/jobs/, where the API checks a job's)
# ---------------------------------------------------------------------------------------------------------


def train_config_for(config: FineTuneConfig, *, architecture: str, dataset_dir: Path, name: str) -> TrainConfig:
    """The ``run`` config of a fine-tune: the base's architecture, the head at the full rate."""
    return TrainConfig(
        model=architecture,
        dataset=f"{FOLDER_PREFIX}{dataset_dir}",
        name=name,
        val_fraction=config.val_fraction,
        augment=config.augment,
        epochs=config.epochs,
        batch_size=config.batch_size,
        optimizer=config.optimizer,
        optimizer_options=config.optimizer_options,
        learning_rate=config.learning_rate,
        weight_decay=config.weight_decay,
        lr_policy=config.lr_policy,
        lr_policy_options=config.lr_policy_options,
        lr_multipliers={head_of(architecture): 1.0, "*": config.backbone_lr_multiplier},  # first match wins
        early_stopping_patience=config.early_stopping_patience,
        seed=config.seed,
        publish=False,  # fine_tune publishes, with the job's lineage
    )


# ---------------------------------------------------------------------------------------------------------
# Data in the base model's input
# ---------------------------------------------------------------------------------------------------------


def input_preprocessing(base: Preprocessing) -> Preprocessing:
    """The base's eval transform, kept for the new version so the service feeds both the same way.

    One change: a base that takes images at its input size only (``resize`` unset, as Fashion-MNIST's
    28x28) gets ``resize`` = the longer input side, so a dataset's larger images are scaled down rather
    than cropped; images already at the input size pass unchanged.
    """
    if base.resize is not None:
        return base
    return msgspec.structs.replace(base, resize=max(base.input_size))


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
        skipped=data.skipped,
    )


# ---------------------------------------------------------------------------------------------------------
# The job
# ---------------------------------------------------------------------------------------------------------


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
class FineTuneResult:
    status: Literal["completed", "stopped"]  # stopped: should_stop() said so; call again to resume
    base: VersionRef  # the version fine-tuned from
    config: FineTuneConfig  # resolved
    epochs_completed: int
    metrics: dict[str, float]  # test_accuracy, val_accuracy, ece, ...; empty unless completed
    published: VersionRef | None
    promoted: bool  # production names the new version (a new name's first version always becomes production)
    run_dir: Path


def fine_tune(
    *,
    base: str,
    base_version: int | str | None,
    dataset_dir: Path,
    dataset_id: str | None,
    dataset_sha256: str | None,
    job_id: str,
    config: FineTuneConfig,
    output_dir: Path,
    settings: TrainingSettings,
    publish_name: str | None = None,
    auto_promote: bool = False,
    min_accuracy: float | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    on_start: Callable[[FineTuneConfig], None] | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    publish: bool = True,
    echo: bool = False,
) -> FineTuneResult:
    """Fine-tune ``base`` at ``base_version`` (a number, an alias, or None: production) on ``dataset_dir``.

    Publishes one version into ``settings.model_root`` with lineage (base version, ``dataset:<id>`` and its
    sha256, ``job_id``, the resolved hyperparameters). With ``auto_promote``, and a test accuracy (on the
    20 % of the dataset held out) of at least ``min_accuracy`` when one is given, the version becomes
    ``production`` and running servers are told at once (``settings.redis_url``).

    ``should_stop`` is polled after every batch and once more before publishing; a stop returns status
    "stopped" with nothing published, and calling again with the same ``output_dir`` resumes. ``on_epoch``
    gets each completed epoch's metrics (on a resume, only the new epochs'); ``on_start`` the resolved
    hyperparameters before training starts.

    ``publish=False`` stops once training, calibration and export are done (status "completed", nothing
    published): a sweep trains each trial so, then calls again with ``publish=True`` on the best trial's
    ``output_dir``, which publishes without training again.

    Raises, before anything trains: ``InvalidHyperparameter`` / ``UnknownOptimizer`` / ``UnknownPolicy``
    for hyperparameters that cannot run, ``ModelNotFound`` / ``VersionNotFound`` / ``AliasNotFound`` /
    ``CorruptVersion`` for the base, ``IncompatibleBase``, ``DatasetError`` for unusable images,
    ``JobRunning`` while another process runs the job, and ``TrainingError`` when ``output_dir`` belongs
    to another job.
    """
    if min_accuracy is not None and not 0.0 <= min_accuracy <= 1.0:
        raise InvalidHyperparameter(f"min_accuracy is a test accuracy between 0 and 1, got {min_accuracy}")
    repository = ModelRepository(settings.model_root)
    run_dir = output_dir / RUN_DIR

    def base_ref(version: int) -> VersionRef:
        return VersionRef(base, version, repository.root / base / str(version))

    with job_lock(output_dir, job_id):  # one delivery at a time; a second one fails at once
        dataset = f"{DATASET_PREFIX}{dataset_id}" if dataset_id else f"{FOLDER_PREFIX}{dataset_dir.resolve()}"
        record = read_job(output_dir)
        if record is not None:
            check_same_job(record, job_id=job_id, base=base, dataset=dataset, config=config)
            done = already_published(repository, output_dir, record) if publish else None
            if done is not None:
                ref, promoted = done
                if promoted is None:
                    promoted = settle(repository, output_dir, ref, auto_promote, min_accuracy, settings.redis_url)
                metrics = repository.manifest(ref.name, ref.version).metrics
                return FineTuneResult(
                    "completed", base_ref(record.base_version), FineTuneConfig(**record.config),
                    int(metrics.get("epochs", 0)), metrics, ref, promoted, run_dir,
                )  # fmt: skip

        # ---- the base version: manifest (files checked against their sha256), weights, head
        version = record.base_version if record else repository.resolve(base, base_version)
        manifest = repository.verify(base, version)
        if manifest.weights_sha256 is None:
            raise IncompatibleBase(f"{base} v{version} was published without {WEIGHTS_FILE}; it cannot be fine-tuned")
        head = head_of(manifest.architecture)
        data = load_folder_as(dataset_dir, input_preprocessing(manifest.preprocessing), name=dataset, seed=config.seed)
        new_head = data.labels != manifest.labels
        name = record.name if record else target_name(repository, base, data.labels, dataset_id or dataset_dir.name,
                                                      given=publish_name, new_head=new_head)  # fmt: skip

        # ---- hyperparameters, resolved as run() resolves them
        train_config = train_config_for(config, architecture=manifest.architecture, dataset_dir=dataset_dir.resolve(),
                                        name=name)  # fmt: skip
        train_config = resolve_config(train_config, train_images=len(split_dataset(data, train_config).train[1]),
                                      world_size=1)  # fmt: skip
        resolved = config.model_copy(update={key: getattr(train_config, key) for key in RESOLVED})
        if record is None:
            record = JobRecord(job_id, base, version, dataset, dataset_sha256, name, requested=config.to_dict(),
                               config=resolved.to_dict())  # fmt: skip
            write_json(output_dir / JOB_FILE, msgspec.to_builtins(record))
        if on_start is not None:
            on_start(resolved)

        # ---- train (or resume, or skip when a previous delivery finished training)
        if not (run_dir / RESULT_FILE).is_file():
            weights = base_weights(repository, manifest, drop=head if new_head else None)
            resume = (run_dir / "checkpoints" / "last.pt").is_file()
            if not resume and run_dir.exists():
                shutil.rmtree(run_dir)  # left by a process that died before the first epoch ended
            try:
                result = run(
                    train_config, settings=settings, output_dir=run_dir, resume=resume, should_stop=should_stop,
                    progress=False, echo=echo, data=data, on_epoch=on_epoch,
                    keep_best=config.early_stopping_patience is not None,
                    start=Pretrained(weights, head=head, freeze_backbone_epochs=config.freeze_backbone_epochs),
                )  # fmt: skip
            except BaseException:
                if not run_dir.exists():  # failed before training began (run removed its folder): forget the job
                    (output_dir / JOB_FILE).unlink(missing_ok=True)
                raise
            if result.status == "interrupted":
                return FineTuneResult("stopped", base_ref(version), resolved, result.epochs_completed, {}, None, False,
                                      run_dir)  # fmt: skip
        finished = read_result(run_dir)
        metrics = {key: float(value) for key, value in finished["metrics"].items()}
        epochs_completed = int(metrics["epochs"])
        if should_stop():  # cancelled while calibrating and exporting: publish nothing
            return FineTuneResult("stopped", base_ref(version), resolved, epochs_completed, {}, None, False, run_dir)
        if not publish:
            return FineTuneResult("completed", base_ref(version), resolved, epochs_completed, metrics, None, False,
                                  run_dir)  # fmt: skip

        # ---- publish once, then promote once
        published = repository.publish(
            job_manifest(finished, record, run_dir), run_dir / "model.onnx", run_dir / WEIGHTS_FILE
        )
        write_json(output_dir / PUBLISHED_FILE, {"name": published.name, "version": published.version,
                                                 "promoted": None})  # fmt: skip
        promoted = settle(repository, output_dir, published, auto_promote, min_accuracy, settings.redis_url)
        return FineTuneResult("completed", base_ref(version), resolved, epochs_completed, metrics, published, promoted,
                              run_dir)  # fmt: skip


# ---------------------------------------------------------------------------------------------------------
# Steps
# ---------------------------------------------------------------------------------------------------------


def base_weights(repository: ModelRepository, manifest: Manifest, *, drop: str | None) -> dict[str, torch.Tensor]:
    """The base's ``weights.pt`` (``weights_only=True``, checked strictly against its architecture), without
    the tensors of module ``drop`` (the head being replaced)."""
    model = create_model(manifest.architecture, in_channels=manifest.preprocessing.channels,
                         num_classes=len(manifest.labels))  # fmt: skip
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


def job_manifest(result: dict[str, Any], record: JobRecord, run_dir: Path) -> Manifest:
    manifest = manifest_from_result(result, name=record.name, run_dir=run_dir)
    lineage = Lineage(
        dataset=record.dataset,
        config=result["config"],  # the full training config (a TrainConfig)
        run_dir=manifest.lineage.run_dir,
        base_model=record.base_model,
        base_version=record.base_version,
        dataset_sha256=record.dataset_sha256,
        job_id=record.job_id,
        fine_tune=record.config,
    )
    return msgspec.structs.replace(manifest, lineage=lineage)


def settle(
    repository: ModelRepository,
    output_dir: Path,
    ref: VersionRef,
    auto_promote: bool,
    min_accuracy: float | None,
    redis_url: str | None,
) -> bool:
    """After publishing: production for a new name's first version, or (``auto_promote``) for a version that
    passes the accuracy gate; servers are told; the outcome is recorded. Safe to repeat."""
    accuracy = repository.manifest(ref.name, ref.version).metrics["test_accuracy"]
    production = repository.aliases(ref.name).get(PRODUCTION)
    passes = auto_promote and (min_accuracy is None or accuracy >= min_accuracy)
    promote = production in (None, ref.version) or passes  # (ref.version: a previous attempt promoted it)
    if promote:
        repository.set_alias(ref.name, PRODUCTION, ref.version)
    announce_change(redis_url, ref.name)  # a new version, and perhaps a new production
    write_json(output_dir / PUBLISHED_FILE, {"name": ref.name, "version": ref.version, "promoted": promote})
    return promote


def already_published(
    repository: ModelRepository, output_dir: Path, record: JobRecord
) -> tuple[VersionRef, bool | None] | None:
    """The version this job published and whether it was promoted (None: not decided yet), or None."""
    path = output_dir / PUBLISHED_FILE
    if path.is_file():
        done = json.loads(path.read_text())
        name, version = done["name"], int(done["version"])
        return VersionRef(name, version, repository.path(name, version)), done["promoted"]
    try:
        versions = repository.versions(record.name)
    except ModelNotFound:
        return None
    for version in reversed(versions):  # the process died between publishing and writing published.json
        if repository.manifest(record.name, version).lineage.job_id == record.job_id:
            write_json(path, {"name": record.name, "version": version, "promoted": None})
            return VersionRef(record.name, version, repository.path(record.name, version)), None
    return None


@contextlib.contextmanager
def job_lock(output_dir: Path, job_id: str) -> Iterator[None]:
    """An exclusive lock on the job folder for as long as a delivery runs (released when the process dies)."""
    output_dir.mkdir(parents=True, exist_ok=True)
    with (output_dir / ".lock").open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise JobRunning(f"job {job_id} is running in another process ({output_dir} is locked)") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def read_job(output_dir: Path) -> JobRecord | None:
    path = output_dir / JOB_FILE
    if not path.is_file():
        return None
    try:
        return msgspec.json.decode(path.read_bytes(), type=JobRecord)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise TrainingError(f"{path} is not a fine-tuning job record: {exc}") from exc


def check_same_job(record: JobRecord, *, job_id: str, base: str, dataset: str, config: FineTuneConfig) -> None:
    given = config.to_dict()
    if (record.job_id, record.base_model, record.dataset) != (job_id, base, dataset) or given not in (
        record.requested,
        record.config,
    ):
        raise TrainingError(
            f"the job folder holds job {record.job_id} (base {record.base_model}, {record.dataset}) with other "
            f"hyperparameters or ids than job {job_id}: give each job its own output folder"
        )


def write_json(path: Path, value: Any) -> None:
    """Written beside and renamed into place: a reader sees the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    try:
        staging.write_text(json.dumps(value, indent=2) + "\n")
        os.replace(staging, path)
    finally:
        staging.unlink(missing_ok=True)
