"""The model repository: the contract between training (writes) and serving (reads). See DESIGN.md."""

from service.repository.errors import (
    AliasNotFound,
    CorruptVersion,
    ModelNotFound,
    ReportNotFound,
    RepositoryError,
    RepositoryReadOnly,
    VersionNotFound,
)
from service.repository.manifest import (
    MANIFEST_SCHEMA_VERSION,
    Explanation,
    Imported,
    Lineage,
    Manifest,
    Preprocessing,
    TensorSpec,
    Variant,
)
from service.repository.store import ModelRepository, StoredReport, VersionRef

__all__ = [
    "MANIFEST_SCHEMA_VERSION",
    "AliasNotFound",
    "CorruptVersion",
    "Explanation",
    "Imported",
    "Lineage",
    "Manifest",
    "ModelNotFound",
    "ModelRepository",
    "Preprocessing",
    "ReportNotFound",
    "RepositoryError",
    "RepositoryReadOnly",
    "StoredReport",
    "TensorSpec",
    "Variant",
    "VersionNotFound",
    "VersionRef",
]
