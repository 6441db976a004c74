"""What a client asks of the jobs: submit one (every check that can run without torch, then the record and
its tasks) and cancel one.

A submission that fails a check creates nothing (the API answers 4xx). One that passes is stored as
``validating``, its trials are sent to the queue, and it turns ``queued``; if the queue refuses, the record
is removed again, so a client never holds the id of a job no worker will see.
"""

from typing import Any

import msgspec

from service.datasets import DatasetStore
from service.jobs import lifecycle
from service.jobs.errors import InvalidJob
from service.jobs.hyperparameters import FineTuneConfig, expand_sweep
from service.jobs.queue import RUN_TRIAL, JobQueue
from service.jobs.record import AutoPromote, Job, Trial, now
from service.jobs.store import JobStore, new_job_id
from service.repository import ModelRepository
from service.repository.store import NAME_PATTERN

MAX_METADATA_KEYS = 16
MAX_METADATA_CHARS = 512


class JobRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``POST /v1/fine-tuning/jobs``. Hyperparameters by the names ``imgcls train`` uses; a list of values
    for learning_rate, optimizer, lr_policy or batch_size makes a sweep (one trial per combination)."""

    base_model: str
    dataset: str  # a stored dataset's id (POST /v1/datasets)
    base_version: int | str | None = None  # a number or an alias; default: production, else the latest
    validation_split: float | None = None  # share of the training images held out for early stopping
    seed: int | None = None
    hyperparameters: dict[str, Any] = {}
    auto_promote: AutoPromote = False  # "shadow": through a shadow rollout and its gate
    min_accuracy: float | None = None  # test accuracy the new version needs to be promoted
    suffix: str | None = None  # publish as <base_model>-<suffix>
    metadata: dict[str, str] = {}


def check_request(request: JobRequest, *, max_trials: int) -> list[FineTuneConfig]:
    """The trials' hyperparameters (a sweep of at most ``max_trials``); raises ``InvalidJob`` naming what to
    fix."""
    values = dict(request.hyperparameters)
    for field, name in (("validation_split", "val_fraction"), ("seed", "seed")):
        given = getattr(request, field)
        if given is not None:
            if name in values and values[name] != given:
                raise InvalidJob(f"{field} is given twice, also as hyperparameters.{name}, with another value")
            values[name] = given
    if request.min_accuracy is not None and not 0.0 <= request.min_accuracy <= 1.0:
        raise InvalidJob(f"min_accuracy is a test accuracy between 0 and 1, got {request.min_accuracy}")
    if request.min_accuracy is not None and not request.auto_promote:
        raise InvalidJob("min_accuracy gates auto_promote: set auto_promote to true, or leave min_accuracy out")
    if request.suffix is not None and not NAME_PATTERN.match(f"{request.base_model}-{request.suffix}"):
        raise InvalidJob(
            f"suffix {request.suffix!r} does not make a model name with {request.base_model!r}: use lowercase "
            "letters, digits, '.', '_' or '-', 64 characters in all"
        )
    if len(request.metadata) > MAX_METADATA_KEYS or any(
        not key or len(key) > 64 or ":" in key or len(value) > MAX_METADATA_CHARS
        for key, value in request.metadata.items()
    ):
        raise InvalidJob(
            f"metadata holds at most {MAX_METADATA_KEYS} keys of 1-64 characters without ':' (the list filter is "
            f"key:value), values of at most {MAX_METADATA_CHARS}"
        )
    return expand_sweep(values, max_trials=max_trials)


def swept(trials: list[FineTuneConfig]) -> dict[str, Any]:
    """The job's hyperparameters: each one's value, or the list of values a sweep takes."""
    rows = [trial.to_dict() for trial in trials]
    return {key: rows[0][key] if len({repr(r[key]) for r in rows}) == 1 else [r[key] for r in rows] for key in rows[0]}


def submit(
    request: JobRequest,
    *,
    repository: ModelRepository,
    datasets: DatasetStore,
    store: JobStore,
    queue: JobQueue,
    max_trials: int,
) -> Job:
    """Check, store and enqueue a job; the job as stored (``queued``). Raises ``InvalidJob``, the
    repository's and the dataset store's not-found errors, and ``JobStoreUnavailable``."""
    trials = check_request(request, max_trials=max_trials)
    version = repository.resolve(request.base_model, request.base_version)
    manifest = repository.manifest(request.base_model, version)
    if not manifest.fine_tunable:
        imported = manifest.lineage.imported
        why = (
            f"it was imported from {imported.source}, an ONNX file" if imported is not None else "it has no weights.pt"
        )
        raise InvalidJob(
            f"{request.base_model} v{version} is not fine-tunable: {why} (fine-tuning needs the torch weights); "
            "fine-tune a model trained here or imported with import-torchvision"
        )
    dataset = datasets.get(request.dataset)
    if len(dataset.classes) < 2:
        raise InvalidJob(f"dataset {dataset.id} has {len(dataset.classes)} class; a classifier needs at least two")
    created = now()
    job = Job(
        id=new_job_id(),
        status="validating",
        created_at=created,
        updated_at=created,
        base_model=request.base_model,
        base_version=version,
        dataset=dataset.id,
        dataset_sha256=dataset.sha256,
        auto_promote=request.auto_promote,
        min_accuracy=request.min_accuracy,
        suffix=request.suffix,
        metadata=dict(request.metadata),
        hyperparameters=swept(trials),
        trials=[Trial(index=i, hyperparameters=config.to_dict()) for i, config in enumerate(trials)],
    )
    store.create(job)
    try:
        task_ids = [queue.send(RUN_TRIAL, job.id, trial.index) for trial in job.trials]
    except BaseException:
        store.delete_unaccepted(job.id)
        raise

    def queued(stored: Job) -> Job:
        trials = [
            msgspec.structs.replace(t, task_id=task_id) for t, task_id in zip(stored.trials, task_ids, strict=True)
        ]
        return msgspec.structs.replace(stored, status="queued", trials=trials)

    return store.update(job.id, lambda stored: queued(stored) if stored.status == "validating" else None)[0]


def cancel(store: JobStore, job_id: str) -> Job:
    """Queued trials end at once; running ones stop at their next batch (the flag the worker polls).
    Raises ``JobNotCancellable`` for a finished job."""
    job, changed = store.update(job_id, lifecycle.cancel)
    if changed and job.status == "cancelling":
        store.request_cancel(job_id)
    return job
