"""Feedback -> a stored dataset (POST /v1/datasets/from-feedback), so a fine-tuning job can learn from it.

The feedback images of a model go into a zip of class folders, one folder per label, and the zip goes
through the dataset store like an upload (``DatasetStore.save``): the same checks, the same report, the same
ImageFolder tree that jobs read. The record's ``origin`` lists the feedback ids it holds; a job trained on it
names the dataset in its version's lineage (``dataset:<id>``), so a version leads to the feedback it learnt.

A label becomes a folder name with ``/`` and ``\\`` turned into ``_`` and a leading ``.`` into ``_``
(Fashion-MNIST's ``T-shirt/top`` is ``T-shirt_top``): folder names cannot hold them.

``include_base_dataset`` adds, per class, up to ``base_images_per_class`` images drawn at random from the
dataset the model was trained on, so a fine-tune on a few corrections keeps the classes it was not corrected
on (and every class has a folder, which a job needs to keep the base's labels and head). Feasible when the
model's lineage names a stored dataset (``dataset:<id>``) or a folder this server can read (``folder:``);
the built-in Fashion-MNIST and digits (and imported models) are read by training only: 422, saying so.
"""

import random
import zipfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from service.datasets import DatasetNotFound, DatasetOrigin, DatasetRecord, DatasetStore
from service.feedback.errors import BaseDatasetUnavailable, FeedbackError, NothingToExport
from service.feedback.records import Feedback
from service.feedback.store import FeedbackStore
from service.repository import ModelRepository

DATASET_PREFIX, FOLDER_PREFIX = "dataset:", "folder:"  # as the manifest's lineage names a dataset
MAX_BASE_IMAGES_PER_CLASS = 10_000


def folder_name(label: str) -> str:
    name = label.replace("/", "_").replace("\\", "_")
    return "_" + name[1:] if name.startswith(".") else name


def feedback_since(store: FeedbackStore, model: str, since: datetime | None) -> list[Feedback]:
    items = store.feedback(model)
    if since is None:
        return items
    return [item for item in items if datetime.fromisoformat(item.created_at) >= since]


def base_folder(datasets: DatasetStore, spec: str, model: str, version: int) -> Path:
    """The ImageFolder tree of the dataset ``spec`` (a manifest's lineage.dataset), or 422 saying why not."""
    if spec.startswith(DATASET_PREFIX):
        try:
            return datasets.images_path(spec.removeprefix(DATASET_PREFIX))
        except DatasetNotFound:
            raise BaseDatasetUnavailable(
                f"{model} v{version} was trained on {spec}, which has been deleted; leave include_base_dataset out"
            ) from None
    if spec.startswith(FOLDER_PREFIX):
        folder = Path(spec.removeprefix(FOLDER_PREFIX))
        if folder.is_dir():
            return folder
        raise BaseDatasetUnavailable(
            f"{model} v{version} was trained on the folder {folder}, which this server cannot read; "
            "leave include_base_dataset out, or upload that folder as a dataset and fine-tune on both"
        )
    raise BaseDatasetUnavailable(
        f"{model} v{version} was trained on {spec!r}, which only the training side reads (built-in datasets, "
        "imported models); leave include_base_dataset out: the dataset then holds the feedback alone"
    )


def sample_base(folder: Path, per_class: int, seed: str) -> Iterator[tuple[str, Path]]:
    """(class folder, image path): up to ``per_class`` files of each class folder, drawn at random (``seed``
    makes the draw the same for the same feedback)."""
    draw = random.Random(seed)
    for class_folder in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(p for p in class_folder.rglob("*") if p.is_file() and not p.name.startswith("."))
        for path in draw.sample(files, min(per_class, len(files))):
            yield class_folder.name, path


def dataset_from_feedback(
    store: FeedbackStore,
    datasets: DatasetStore,
    repository: ModelRepository,
    *,
    model: str,
    since: datetime | None = None,
    include_base_dataset: bool = False,
    base_images_per_class: int = 100,
    name: str | None = None,
) -> DatasetRecord:
    """Store a dataset of ``model``'s feedback (created at or after ``since``); its record, with the report.

    Raises ``NothingToExport``, ``BaseDatasetUnavailable``, ``FeedbackError``, the repository's not-found
    errors, and what ``DatasetStore.save`` raises (``DatasetRejected`` lists every problem, e.g. a class with
    fewer images than the store's minimum).
    """
    if not 1 <= base_images_per_class <= MAX_BASE_IMAGES_PER_CLASS:
        raise FeedbackError(f"base_images_per_class must be between 1 and {MAX_BASE_IMAGES_PER_CLASS:,}")
    version = repository.resolve(model)  # ModelNotFound for a model that does not exist
    items = feedback_since(store, model, since)
    if not items:
        when = f" since {since.isoformat()}" if since else ""
        raise NothingToExport(f"{model} has no feedback{when}; POST /v1/feedback records some")
    labels_by_folder: dict[str, set[str]] = {}
    for item in items:
        labels_by_folder.setdefault(folder_name(item.label), set()).add(item.label)
    if clashes := [sorted(labels) for labels in labels_by_folder.values() if len(labels) > 1]:
        raise FeedbackError(f"labels {' and '.join(map(repr, clashes[0]))} would share one class folder")
    base_spec = repository.manifest(model, version).lineage.dataset if include_base_dataset else None
    base = base_folder(datasets, base_spec, model, version) if base_spec is not None else None
    used: list[str] = []
    base_images = 0
    with datasets.upload_file() as upload:
        with zipfile.ZipFile(upload, "w", zipfile.ZIP_STORED) as archive:
            for item in items:
                try:
                    archive.write(store.image_path(item.id), f"{folder_name(item.label)}/{item.id}.png")
                except (FileNotFoundError, FeedbackError):  # deleted since it was listed
                    continue
                used.append(item.id)
            if base is not None:
                for class_name, path in sample_base(base, base_images_per_class, seed=",".join(sorted(used))):
                    base_images += 1
                    archive.write(path, f"{class_name}/base-{base_images:06d}{path.suffix.lower()}")
        origin = DatasetOrigin(model=model, feedback=sorted(used), base_dataset=base_spec, base_images=base_images)
        return datasets.save(upload, name=name or f"feedback on {model}", origin=origin)


def uses(records: list[DatasetRecord]) -> dict[str, list[str]]:
    """feedback id -> the datasets made from it (newest first, as ``records`` lists them)."""
    used: dict[str, list[str]] = {}
    for record in records:
        if record.origin is not None:
            for feedback_id in record.origin.feedback:
                used.setdefault(feedback_id, []).append(record.id)
    return used
