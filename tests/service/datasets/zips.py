"""Real zip files for the dataset tests: image folders, and the hostile archives a client could send."""

import io
import stat
import struct
import zipfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image

CENTRAL_HEADER = b"PK\x01\x02"
END_RECORD = b"PK\x05\x06"


def image_bytes(seed: int = 0, size: tuple[int, int] = (8, 8), image_format: str = "PNG") -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, image_format)
    return buffer.getvalue()


def folder_entries(counts: dict[str, int], prefix: str = "") -> list[tuple[str, bytes]]:
    """``<prefix><class>/<i>.png`` for each class, each image different."""
    return [
        (f"{prefix}{name}/{i}.png", image_bytes(seed=1000 * position + i))
        for position, (name, count) in enumerate(counts.items())
        for i in range(count)
    ]


def zip_bytes(entries: Iterable[tuple[str | zipfile.ZipInfo, bytes]], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        for name, data in entries:
            archive.writestr(name, data)
    return buffer.getvalue()


def write_zip(path: Path, entries: Iterable[tuple[str | zipfile.ZipInfo, bytes]]) -> Path:
    path.write_bytes(zip_bytes(entries))
    return path


def symlink(name: str, target: str) -> tuple[zipfile.ZipInfo, bytes]:
    info = zipfile.ZipInfo(name)
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info, target.encode()


# ---------------------------------------------------------------- editing the bytes zipfile will not write


def central_headers(data: bytes) -> list[int]:
    """Offsets of the central directory headers, in index order."""
    end = data.rfind(END_RECORD)
    count, _, start = struct.unpack_from("<HII", data, end + 10)
    offsets = []
    at = start
    for _ in range(count):
        assert data[at : at + 4] == CENTRAL_HEADER
        offsets.append(at)
        name_length, extra_length, comment_length = struct.unpack_from("<HHH", data, at + 28)
        at += 46 + name_length + extra_length + comment_length
    return offsets


def patch_central(data: bytes, index: int, field_offset: int, fmt: str, value: int) -> bytes:
    """Overwrite one field of entry ``index``'s central header (flags at 8, uncompressed size at 24)."""
    patched = bytearray(data)
    struct.pack_into(fmt, patched, central_headers(data)[index] + field_offset, value)
    return bytes(patched)


def encrypted(data: bytes, index: int) -> bytes:
    """Mark an entry as encrypted (general purpose flag bit 0), as a password-protected zip does."""
    (flags,) = struct.unpack_from("<H", data, central_headers(data)[index] + 8)
    return patch_central(data, index, 8, "<H", flags | 0x1)


def repeated_index(data: bytes, times: int) -> bytes:
    """Every index entry repeated ``times`` times, all pointing at the same data: overlapping entries."""
    end = data.rfind(END_RECORD)
    count, size, start = struct.unpack_from("<HII", data, end + 10)
    index = data[start : start + size] * times
    record = bytearray(data[end:])
    struct.pack_into("<HHII", record, 8, count * times, count * times, len(index), start)
    return data[:start] + index + bytes(record)


def with_zip64_end(data: bytes, entries: int | None = None) -> bytes:
    """The archive as zip64 writers end it: a zip64 end record and its locator before the end record, whose
    own count and size say "see zip64". ``entries`` makes the zip64 record declare another count."""
    end = data.rfind(END_RECORD)
    count, size, start = struct.unpack_from("<HII", data, end + 10)
    record = struct.pack("<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, count, entries or count, size, start)
    locator = struct.pack("<4sLQL", b"PK\x06\x07", 0, end, 1)
    tail = bytearray(data[end:])
    struct.pack_into("<HHI", tail, 8, 0xFFFF, 0xFFFF, 0xFFFFFFFF)
    return data[:end] + record + locator + bytes(tail)
