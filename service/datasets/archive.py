"""Open an uploaded zip without trusting it: its index is sized up from the end record before ``zipfile`` reads it.

``zipfile.ZipFile`` reads the whole central directory (the index) into memory and builds one object per entry,
so an upload of tiny entries could cost gigabytes before any per-entry check runs. The end record at the tail
of the file declares the entry count and the index size; both are checked first, from a few bytes.
"""

import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from service.datasets.errors import ArchiveTooLarge, UnsafeArchive
from service.datasets.limits import DatasetLimits

END_RECORD = b"PK\x05\x06"  # end of central directory: 22 bytes, then a comment of up to 65,535
ZIP64_LOCATOR = b"PK\x06\x07"  # 20 bytes just before the end record, pointing at the zip64 end record
ZIP64_END_RECORD = b"PK\x06\x06"
# An index entry is 46 bytes plus its name, extra field and comment; dataset paths need far less than this.
MAX_INDEX_BYTES_PER_ENTRY = 1024
NOT_A_ZIP = "the upload is not a zip archive; send a .zip of class folders (cat/1.jpg, dog/2.jpg)"


@dataclass(frozen=True)
class EndRecord:
    entries: int  # as declared; zipfile may still find the index broken
    index_bytes: int


def read_end_record(handle: BinaryIO) -> EndRecord | None:
    """The declared entry count and index size, or None when the file has no end record (not a zip).

    Finds the end record as ``zipfile`` does (at the very end, else the last one within a comment's reach).
    When a zip64 locator sits just before it, ``zipfile`` takes the numbers from a zip64 end record instead:
    Python 3.11 reads the one just before the locator, later versions the one the locator points at. Both
    are read, and the largest numbers found are returned, so the check holds whichever ``zipfile`` uses.
    """
    size = handle.seek(0, 2)
    tail_start = max(0, size - (22 + 65_535))
    handle.seek(tail_start)
    tail = handle.read()
    at = len(tail) - 22
    if at < 0 or tail[at : at + 4] != END_RECORD or tail[-2:] != b"\0\0":  # not there with an empty comment
        at = tail.rfind(END_RECORD)
        if at < 0 or len(tail) - at < 22:
            return None
    entries, index_bytes = struct.unpack_from("<HI", tail, at + 10)
    declared = EndRecord(entries, index_bytes)
    found = []
    locator_at = tail_start + at - 20
    if locator_at >= 0:
        handle.seek(locator_at)
        locator = handle.read(20)
        if locator[:4] == ZIP64_LOCATOR:
            (pointed_at,) = struct.unpack_from("<Q", locator, 8)
            for record_at in {locator_at - 56, pointed_at}:
                if 0 <= record_at < size:
                    handle.seek(record_at)
                    record = handle.read(56)
                    if len(record) == 56 and record[:4] == ZIP64_END_RECORD:
                        found.append(EndRecord(*struct.unpack_from("<QQ", record, 32)))
    if not found:
        return declared
    # 0xFFFF and 0xFFFFFFFF in the end record mean "see the zip64 record"; other values may be a decoy.
    if entries != 0xFFFF and index_bytes != 0xFFFFFFFF:
        found.append(declared)
    return EndRecord(max(r.entries for r in found), max(r.index_bytes for r in found))


def open_archive(path: Path, limits: DatasetLimits) -> zipfile.ZipFile:
    """``zipfile.ZipFile(path)`` once the upload size, entry count and index size are within ``limits``.

    Raises ``ArchiveTooLarge`` or ``UnsafeArchive`` (not a zip, a broken index, a split archive).
    """
    size = path.stat().st_size
    if size > limits.max_upload_bytes:
        raise ArchiveTooLarge(f"the upload is {size:,} bytes, the limit is {limits.max_upload_bytes:,}")
    with path.open("rb") as handle:
        end = read_end_record(handle)
    if end is None:
        raise UnsafeArchive(NOT_A_ZIP)
    if end.entries > limits.max_files:
        raise ArchiveTooLarge(
            f"the archive holds {end.entries:,} entries (files and folders), the limit is {limits.max_files:,}; "
            "split the dataset or remove files"
        )
    if end.index_bytes > max(end.entries, 1) * MAX_INDEX_BYTES_PER_ENTRY:
        raise UnsafeArchive(
            f"the archive's index is {end.index_bytes:,} bytes for {end.entries:,} entries; "
            "file names, comments or extra fields are far too long"
        )
    try:
        return zipfile.ZipFile(path)
    # zipfile raises BadZipFile for most damage, but also ValueError, EOFError or struct.error on some
    # malformed indexes, and NotImplementedError for features it lacks; each means it cannot be read.
    except Exception as error:
        raise UnsafeArchive(
            f"the zip archive cannot be read ({error}); make it again with a standard zip tool"
        ) from error
