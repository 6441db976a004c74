"""Feedback -> a stored dataset through the dataset store: the same checks and report as an uploaded zip,
the feedback ids in its record, and a sample of the model's own training images when asked and possible."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest

from service.datasets import DatasetLimits, DatasetRejected, DatasetStore
from service.feedback import BaseDatasetUnavailable, FeedbackStore, NothingToExport
from service.feedback.export import dataset_from_feedback, uses
from service.feedback.ids import new_feedback_id
from service.feedback.records import Feedback
from service.feedback.store import timestamp
from service.repository import ModelRepository
from tests.service.api.conftest import png_bytes
from tests.service.datasets.zips import folder_entries, zip_bytes


def upload(store: FeedbackStore, label: str, seed: int, *, model: str = "fashion-mnist") -> Feedback:
    feedback = Feedback(
        id=new_feedback_id(),
        model=model,
        version=1,
        label=label,
        kind="label",
        created_at=timestamp(store.clock()),
        source="upload",
    )
    return store.add_upload(feedback, png_bytes(seed))


def stored_zip(datasets: DatasetStore, counts: dict[str, int], tmp_path: Path) -> str:
    path = tmp_path / "base.zip"
    path.write_bytes(zip_bytes(folder_entries(counts)))
    return datasets.save(path, name="base").id


def publish_trained_on(repository: ModelRepository, spec: str, name: str) -> None:
    """A copy of fashion-mnist v1 whose lineage says it was trained on ``spec``."""
    manifest = repository.manifest("fashion-mnist", 1)
    lineage = msgspec.structs.replace(manifest.lineage, dataset=spec)
    folder = repository.path("fashion-mnist", 1)
    weights = folder / "weights.pt"
    repository.publish(
        msgspec.structs.replace(manifest, name=name, lineage=lineage),
        folder / "model.onnx",
        weights if weights.exists() else None,
    )


def test_feedback_becomes_a_checked_dataset_that_lists_its_feedback(
    repository: ModelRepository, tmp_path: Path
) -> None:
    store = FeedbackStore(tmp_path / "feedback", max_bytes=10**9, retention_s=3600)
    datasets = DatasetStore(tmp_path / "data", DatasetLimits(min_images_per_class=2))
    items = [upload(store, "Sneaker", seed) for seed in range(3)] + [upload(store, "T-shirt/top", s) for s in (3, 4)]

    record = dataset_from_feedback(store, datasets, repository, model="fashion-mnist")
    assert record.classes == {"Sneaker": 3, "T-shirt_top": 2}  # a label's "/" cannot be in a folder name
    assert record.name == "feedback on fashion-mnist" and record.skipped_count == 0
    assert record.origin is not None and record.origin.feedback == sorted(item.id for item in items)
    assert datasets.get(record.id) == record
    stored = sorted(p.name for p in (datasets.images_path(record.id) / "Sneaker").iterdir())
    assert all(any(item.id in name for name in stored) for item in items[:3])
    assert uses(datasets.records()) == {item.id: [record.id] for item in items}

    later = datetime.now(UTC) + timedelta(minutes=1)
    with pytest.raises(NothingToExport, match="no feedback since"):
        dataset_from_feedback(store, datasets, repository, model="fashion-mnist", since=later)
    strict = DatasetStore(tmp_path / "data", DatasetLimits())  # 5 images per class, as the API's default
    with pytest.raises(DatasetRejected, match=r"fewer than 5 readable images: Sneaker \(3\), T-shirt_top \(2\)"):
        dataset_from_feedback(store, strict, repository, model="fashion-mnist")


def test_include_base_dataset_samples_the_stored_dataset_a_model_was_trained_on(
    repository: ModelRepository, tmp_path: Path
) -> None:
    store = FeedbackStore(tmp_path / "feedback", max_bytes=10**9, retention_s=3600)
    datasets = DatasetStore(tmp_path / "data", DatasetLimits(min_images_per_class=2))
    base = stored_zip(datasets, {"Sneaker": 8, "Trouser": 8}, tmp_path)
    publish_trained_on(repository, f"dataset:{base}", "shoes")
    items = [upload(store, "Sneaker", seed, model="shoes") for seed in range(2)]

    record = dataset_from_feedback(
        store, datasets, repository, model="shoes", include_base_dataset=True, base_images_per_class=5
    )
    assert record.classes == {"Sneaker": 2 + 5, "Trouser": 5}
    assert record.origin is not None
    assert (record.origin.base_dataset, record.origin.base_images) == (f"dataset:{base}", 10)
    assert record.origin.feedback == sorted(item.id for item in items)  # the base images are not feedback

    upload(store, "Sneaker", 9)  # fashion-mnist: trained on the built-in Fashion-MNIST
    with pytest.raises(BaseDatasetUnavailable, match="only the training side reads"):
        dataset_from_feedback(store, datasets, repository, model="fashion-mnist", include_base_dataset=True)
    publish_trained_on(repository, f"folder:{tmp_path / 'gone'}", "elsewhere")
    upload(store, "Sneaker", 10, model="elsewhere")
    with pytest.raises(BaseDatasetUnavailable, match="which this server cannot read"):
        dataset_from_feedback(store, datasets, repository, model="elsewhere", include_base_dataset=True)
    datasets.delete(base)
    with pytest.raises(BaseDatasetUnavailable, match="has been deleted"):
        dataset_from_feedback(store, datasets, repository, model="shoes", include_base_dataset=True)
