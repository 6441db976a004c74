"""Uploaded datasets: a zip of class folders checked before anything trains, stored under the data root.

``DatasetStore(data_root, limits).save(zip_path, name=...)`` validates (``validate_archive``) and stores;
``records()``, ``get(id)``, ``images_path(id)`` and ``delete(id)`` read and remove.
"""

from service.datasets.errors import (
    ArchiveTooLarge,
    DatasetError,
    DatasetInUse,
    DatasetNotFound,
    DatasetRejected,
    UnsafeArchive,
)
from service.datasets.limits import DatasetLimits
from service.datasets.record import DatasetOrigin, DatasetRecord, SkippedFile
from service.datasets.store import DatasetStore
from service.datasets.validate import ArchiveReport, validate_archive

__all__ = [
    "ArchiveReport",
    "ArchiveTooLarge",
    "DatasetError",
    "DatasetInUse",
    "DatasetLimits",
    "DatasetNotFound",
    "DatasetOrigin",
    "DatasetRecord",
    "DatasetRejected",
    "DatasetStore",
    "SkippedFile",
    "UnsafeArchive",
    "validate_archive",
]
