"""``dataset.json``: what a stored dataset holds, written once when it is stored; the API answers with it."""

import msgspec

MAX_LISTED_SKIPPED = 1000  # skipped files listed in a record; skipped_count counts them all


class SkippedFile(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    path: str  # as named in the zip
    reason: str


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


def encode_record(record: DatasetRecord) -> bytes:
    return msgspec.json.format(msgspec.json.encode(record), indent=2) + b"\n"


def decode_record(data: bytes) -> DatasetRecord:
    return msgspec.json.decode(data, type=DatasetRecord)
