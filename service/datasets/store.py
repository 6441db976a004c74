"""Stored datasets: ``<data_root>/datasets/<id>/`` with ``dataset.json`` and ``images/<class>/<file>``.

The ``images`` folder is an ImageFolder tree that ``imgcls train --dataset folder:<path>`` reads as it is.
Saving extracts into a hidden staging folder beside the datasets and renames it into place, so a reader
never sees half a dataset; deleting renames it out of sight before removing it. Ids are made here
(``ds_<16 hex>``) and held to that pattern before any path is built, so a request never chooses a path:
the only names taken from a zip are class folder names, checked by ``validate``; file names are rewritten.
"""

import contextlib
import os
import re
import secrets
import shutil
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from service.datasets.errors import DatasetError, DatasetNotFound, UnsafeArchive
from service.datasets.limits import DatasetLimits
from service.datasets.record import MAX_LISTED_SKIPPED, DatasetOrigin, DatasetRecord, decode_record, encode_record
from service.datasets.validate import AcceptedImage, validate_archive
from service.repository.store import sha256_file

ID_PATTERN = re.compile(r"ds_[0-9a-f]{16}")  # whole string: fullmatch, never match
RECORD_FILE = "dataset.json"
IMAGES_DIR = "images"
STALE_AFTER_S = 24 * 3600  # staging folders and uploads this old were left by a crashed process
_HIDDEN_PREFIXES = (".staging-", ".upload-", ".deleting-")
_UNSAFE_STEM = re.compile(r"[^A-Za-z0-9_-]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MAX_NAME_CHARS = 100


def new_id() -> str:
    return f"ds_{secrets.token_hex(8)}"


def check_name(name: str) -> str:
    """A dataset's name is a label for people (never a path): 1-100 characters, no control characters."""
    if not name.strip() or len(name) > MAX_NAME_CHARS or _CONTROL.search(name):
        raise DatasetError(f"invalid dataset name {name[:120]!r}: use 1-{MAX_NAME_CHARS} printable characters")
    return name


def stored_file_name(index: int, original: str, extension: str) -> str:
    """``000042-cat_photo.jpg``: a counter (unique), the original stem reduced to [A-Za-z0-9_-], the format's
    extension."""
    stem = _UNSAFE_STEM.sub("_", PurePosixPath(original).stem).strip("_")[:40]
    return f"{index:06d}-{stem}{extension}" if stem else f"{index:06d}{extension}"


class DatasetStore:
    def __init__(self, data_root: Path, limits: DatasetLimits | None = None) -> None:
        self.folder = Path(data_root) / "datasets"
        self.limits = limits or DatasetLimits()

    # ---------------------------------------------------------------- reading

    def _path(self, dataset_id: str) -> Path:
        if not ID_PATTERN.fullmatch(dataset_id):  # checked before any path is built from it
            raise DatasetNotFound(dataset_id)
        return self.folder / dataset_id

    def get(self, dataset_id: str) -> DatasetRecord:
        try:
            return decode_record((self._path(dataset_id) / RECORD_FILE).read_bytes())
        except FileNotFoundError:
            raise DatasetNotFound(dataset_id) from None

    def images_path(self, dataset_id: str) -> Path:
        """The ImageFolder tree of a stored dataset, for ``folder:<path>`` in training."""
        path = self._path(dataset_id) / IMAGES_DIR
        if not path.is_dir():
            raise DatasetNotFound(dataset_id)
        return path

    def records(self) -> list[DatasetRecord]:
        """Every stored dataset, newest first."""
        if not self.folder.is_dir():
            return []
        records = []
        for entry in self.folder.iterdir():
            if ID_PATTERN.fullmatch(entry.name):
                with contextlib.suppress(DatasetNotFound):  # deleted while we looked
                    records.append(self.get(entry.name))
        return sorted(records, key=lambda record: (record.created_at, record.id), reverse=True)

    # ---------------------------------------------------------------- writing

    @contextlib.contextmanager
    def upload_file(self) -> Iterator[Path]:
        """A fresh path under the data root for an incoming zip (on the same volume as the datasets); removed
        on exit."""
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f".upload-{uuid.uuid4().hex}.zip"
        try:
            yield path
        finally:
            path.unlink(missing_ok=True)

    def save(self, upload: Path, *, name: str | None = None, origin: DatasetOrigin | None = None) -> DatasetRecord:
        """Validate the zip at ``upload`` (``validate_archive`` with this store's limits) and store its images.

        Raises what ``validate_archive`` raises, and ``DatasetError`` for an invalid name; nothing is left
        behind on failure. ``name`` defaults to the new id; ``origin`` says what a zip the service made holds.
        """
        if name is not None:
            check_name(name)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._remove_stale()
        staging = self.folder / f".staging-{uuid.uuid4().hex}"
        images = staging / IMAGES_DIR
        images.mkdir(parents=True)
        try:
            stored = 0

            def keep(image: AcceptedImage) -> None:
                nonlocal stored
                folder = images / image.class_name
                target = folder / stored_file_name(stored, image.path, image.extension)
                if folder.parent != images or target.parent != folder:  # validate checked it; checked again
                    raise UnsafeArchive(f"the class folder name {image.class_name!r} is not a plain folder name")
                folder.mkdir(exist_ok=True)
                target.write_bytes(image.data)
                stored += 1

            report = validate_archive(upload, self.limits, keep)
            dataset_id = new_id()
            record = DatasetRecord(
                id=dataset_id,
                name=name or dataset_id,
                created_at=datetime.now(UTC).isoformat(timespec="milliseconds"),
                classes=report.classes,
                files=report.files,
                bytes=report.bytes,
                skipped=report.skipped[:MAX_LISTED_SKIPPED],
                skipped_count=len(report.skipped),
                sha256=sha256_file(upload),
                origin=origin,
            )
            (staging / RECORD_FILE).write_bytes(encode_record(record))
            os.rename(staging, self.folder / dataset_id)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return record

    def delete(self, dataset_id: str) -> None:
        """Remove a dataset: renamed out of sight first (readers see all of it or nothing), then removed."""
        path = self._path(dataset_id)
        doomed = self.folder / f".deleting-{dataset_id}-{uuid.uuid4().hex}"
        try:
            os.rename(path, doomed)
        except FileNotFoundError:
            raise DatasetNotFound(dataset_id) from None
        shutil.rmtree(doomed, ignore_errors=True)

    def _remove_stale(self) -> None:
        """Staging folders, uploads and half-deleted datasets left by a process that died; other processes'
        work in progress is younger than ``STALE_AFTER_S`` and stays."""
        cutoff = time.time() - STALE_AFTER_S
        for entry in self.folder.iterdir():
            if entry.name.startswith(_HIDDEN_PREFIXES):
                with contextlib.suppress(FileNotFoundError):
                    if entry.lstat().st_mtime < cutoff:
                        if entry.is_dir() and not entry.is_symlink():
                            shutil.rmtree(entry, ignore_errors=True)
                        else:
                            entry.unlink()
