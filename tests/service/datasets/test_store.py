import os
import time
from pathlib import Path

import pytest

from service.datasets import DatasetError, DatasetNotFound, DatasetRejected, DatasetStore, UnsafeArchive
from service.datasets.record import decode_record
from service.datasets.store import ID_PATTERN, STALE_AFTER_S, sha256_file
from tests.service.datasets.zips import folder_entries, image_bytes, symlink, write_zip

GOOD = folder_entries({"cat": 5, "dog": 5})


@pytest.fixture
def store(tmp_path: Path) -> DatasetStore:
    return DatasetStore(tmp_path / "data")


def visible(store: DatasetStore) -> list[str]:
    return sorted(entry.name for entry in store.folder.iterdir())


def test_save_stores_an_image_folder_and_its_record(store: DatasetStore, tmp_path: Path) -> None:
    entries = [*GOOD, ("cat/My Photo (1).PNG", image_bytes(50, image_format="JPEG")), ("notes.txt", b"x")]
    upload = write_zip(tmp_path / "pets.zip", entries)
    record = store.save(upload, name="pets")

    assert ID_PATTERN.fullmatch(record.id)
    assert (record.name, record.classes, record.files) == ("pets", {"cat": 6, "dog": 5}, 11)
    assert record.sha256 == sha256_file(upload)
    assert [(s.path, s.reason[:17]) for s in record.skipped] == [("notes.txt", "not inside a clas")]
    assert record.skipped_count == 1
    images = store.images_path(record.id)
    assert images == store.folder / record.id / "images"
    assert sorted(p.name for p in images.iterdir()) == ["cat", "dog"]
    cat = sorted(p.name for p in (images / "cat").iterdir())
    assert "000010-My_Photo_1.jpg" in cat  # rewritten: counter, safe stem, the decoded format's extension
    assert len(cat) == 6
    assert record.bytes == sum(p.stat().st_size for p in images.rglob("*") if p.is_file())
    assert decode_record((store.folder / record.id / "dataset.json").read_bytes()) == record == store.get(record.id)
    assert visible(store) == [record.id]  # no staging folder, no upload copy left


def test_records_newest_first_then_delete(store: DatasetStore, tmp_path: Path) -> None:
    first = store.save(write_zip(tmp_path / "a.zip", GOOD))
    second = store.save(write_zip(tmp_path / "b.zip", folder_entries({"x": 5, "y": 6, "z": 5})))
    assert first.name == first.id
    assert [r.id for r in store.records()] == [second.id, first.id]
    store.delete(first.id)
    assert [r.id for r in store.records()] == [second.id]
    with pytest.raises(DatasetNotFound, match=f"^no dataset with id '{first.id}'$"):  # the API adds the route
        store.get(first.id)
    with pytest.raises(DatasetNotFound):
        store.delete(first.id)
    assert visible(store) == [second.id]


def test_a_rejected_upload_leaves_nothing_behind(store: DatasetStore, tmp_path: Path) -> None:
    # cat's images are extracted before dog turns out too small: the staging folder must go
    with pytest.raises(DatasetRejected, match=r"dog \(2\)"):
        store.save(write_zip(tmp_path / "a.zip", folder_entries({"cat": 5, "dog": 2})))
    with pytest.raises(UnsafeArchive):
        store.save(write_zip(tmp_path / "b.zip", [*GOOD, symlink("dog/x.png", "/etc/passwd")]))
    assert visible(store) == []
    assert store.records() == []


def test_work_in_progress_is_invisible(store: DatasetStore, tmp_path: Path) -> None:
    saved = store.save(write_zip(tmp_path / "a.zip", GOOD))
    record = (store.folder / saved.id / "dataset.json").read_bytes()
    for hidden in (".staging-0123", ".deleting-ds_0123456789abcdef-99", "not-an-id", "ds_0123456789ABCDEF"):
        (store.folder / hidden).mkdir()
        (store.folder / hidden / "dataset.json").write_bytes(record)
    assert [r.id for r in store.records()] == [saved.id]


def test_old_leftovers_of_a_crashed_process_are_removed(store: DatasetStore, tmp_path: Path) -> None:
    store.folder.mkdir(parents=True)
    old, young = store.folder / ".staging-old", store.folder / ".staging-young"
    for folder in (old, young):
        (folder / "images" / "cat").mkdir(parents=True)
    upload = store.folder / ".upload-old.zip"
    upload.write_bytes(b"PK")
    long_ago = time.time() - STALE_AFTER_S - 60
    for path in (old, upload):
        os.utime(path, (long_ago, long_ago))
    saved = store.save(write_zip(tmp_path / "a.zip", GOOD))
    assert visible(store) == sorted([".staging-young", saved.id])


def test_upload_file_is_under_the_data_root_and_removed(store: DatasetStore) -> None:
    with store.upload_file() as path:
        assert path.parent == store.folder and path.name.startswith(".upload-")
        path.write_bytes(b"zip")
    assert not path.exists()


@pytest.mark.parametrize(
    "dataset_id",
    ["../outside", "ds_..", "..", "", "ds_0123456789abcdef/../../outside", "/etc", "ds_0123456789abcdef\n"],
)
def test_ids_never_become_paths(store: DatasetStore, tmp_path: Path, dataset_id: str) -> None:
    outside = tmp_path / "data" / "outside"
    outside.mkdir(parents=True)
    (outside / "dataset.json").write_bytes(b"{}")
    for call in (store.get, store.delete, store.images_path):
        with pytest.raises(DatasetNotFound):
            call(dataset_id)
    assert (outside / "dataset.json").exists()


def test_names_are_labels_for_people(store: DatasetStore, tmp_path: Path) -> None:
    upload = write_zip(tmp_path / "a.zip", GOOD)
    for bad in ("", "   ", "x" * 101, "line\nbreak"):
        with pytest.raises(DatasetError, match="invalid dataset name"):
            store.save(upload, name=bad)
    assert store.save(upload, name="../../etc/passwd").name == "../../etc/passwd"  # only a label
    assert len(visible(store)) == 1
