"""``dataset.json``: what a stored dataset holds, written once when it is stored; the API answers with it."""

import msgspec

MAX_LISTED_SKIPPED = 1000  # skipped files listed in a record; skipped_count counts them all


class SkippedFile(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    path: str  # as named in the zip
    reason: str


class DatasetOrigin(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A dataset the service made from feedback (POST /v1/datasets/from-feedback) rather than an upload."""

    model: str  # whose feedback
    feedback: list[str]  # the ids of the feedback items it holds (GET /v1/feedback)
    base_dataset: str | None = None  # the model's training dataset sampled into it ("dataset:<id>", "folder:...")
    base_images: int = 0  # images taken from it


class DatasetRecord(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    id: str  # ds_<16 hex>
    name: str  # the client's label for it; never part of a path
    created_at: str  # ISO 8601, UTC
    classes: dict[str, int]  # class name -> images stored, sorted by name (the label order training uses)
    files: int  # images stored
    bytes: int  # their total size
    skipped: list[SkippedFile]  # the first MAX_LISTED_SKIPPED files left out, with the reason
    skipped_count: int
    sha256: str  # of the uploaded zip
    origin: DatasetOrigin | None = None  # made from feedback; None for an uploaded zip


def encode_record(record: DatasetRecord) -> bytes:
    return msgspec.json.format(msgspec.json.encode(record), indent=2) + b"\n"


def decode_record(data: bytes) -> DatasetRecord:
    return msgspec.json.decode(data, type=DatasetRecord)
