"""A dataset uploaded to the service (POST /v1/datasets) is an ImageFolder tree that training reads as it is."""

from pathlib import Path

import torch

from service.datasets import DatasetStore
from tests.service.datasets.zips import folder_entries, image_bytes, write_zip
from training.data.datasets import load_dataset


def test_a_stored_upload_loads_as_a_folder_dataset(tmp_path: Path) -> None:
    entries = [
        *folder_entries({"cat": 5, "dog": 7}, prefix="pets/"),
        ("pets/dog/nested/extra.jpeg", image_bytes(99, size=(12, 10), image_format="JPEG")),
        ("pets/dog/no extension", image_bytes(98)),
        ("pets/cat/notes.txt", b"skipped at upload"),
    ]
    store = DatasetStore(tmp_path / "data")
    record = store.save(write_zip(tmp_path / "pets.zip", entries), name="pets")
    assert record.classes == {"cat": 5, "dog": 9}

    bundle = load_dataset(f"folder:{store.images_path(record.id)}", fashion_mnist_dir=tmp_path, image_size=8, seed=0)

    assert bundle.labels == ("cat", "dog")
    assert bundle.skipped == ()
    labels = torch.cat([bundle.train_labels, bundle.test_labels])
    assert dict(zip(bundle.labels, torch.bincount(labels).tolist(), strict=True)) == record.classes
