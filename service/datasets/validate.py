"""Decide what an uploaded zip holds, before anything trains on it.

The order is the defence. First the whole index, from names and declared sizes only: unsafe names (absolute,
``..``, backslashes, NUL), links and special files, encrypted entries, the entry count, the total uncompressed
size and the compression ratios (zip bombs) — nothing is decompressed yet. Then the layout, from names alone:
class folders, an optional wrapping top folder, hidden and stray files. Only then is each candidate read, one
at a time, bounded by its declared size, and decoded exactly as the API decodes an upload (``decode_image``).
Files that are not usable images are skipped with the reason (a zip inside the zip is one: it is never opened);
problems with the dataset as a whole (one class, too few images in a class, class folders that differ only in
letter case) reject it with every problem listed.
"""

import re
import stat
import unicodedata
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from service.datasets.archive import open_archive
from service.datasets.errors import ArchiveTooLarge, DatasetRejected, UnsafeArchive
from service.datasets.limits import RATIO_GRACE_BYTES, DatasetLimits
from service.datasets.record import SkippedFile
from service.imaging import ImageError, decode_image

SYSTEM_NAMES = frozenset({"__MACOSX", "Thumbs.db", "desktop.ini"})  # and every name starting with "."
MAX_CLASS_NAME_CHARS = 100
MAX_CLASS_NAME_BYTES = 200  # in UTF-8: folder names stop at 255 bytes on common filesystems
READ_CHUNK = 1024 * 1024
# The stored copy's extension follows the decoded format, so training's ImageFolder reader picks it up.
FORMAT_EXTENSIONS = {
    "JPEG": ".jpg",
    "MPO": ".jpg",  # multi-picture JPEG from phones
    "PNG": ".png",
    "WEBP": ".webp",
    "GIF": ".gif",
    "BMP": ".bmp",
    "TIFF": ".tif",
    "PPM": ".ppm",
}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_DRIVE = re.compile(r"^[A-Za-z]:")
ENCRYPTED_FLAG = 0x1


@dataclass(frozen=True)
class AcceptedImage:
    path: str  # as named in the zip
    class_name: str  # checked: safe as one folder name
    data: bytes  # the file as it was in the zip
    extension: str  # from the decoded format: ".png", ".jpg", ...


@dataclass(frozen=True)
class ArchiveReport:
    classes: dict[str, int]  # class name -> accepted images, sorted by name
    files: int
    bytes: int
    skipped: list[SkippedFile]


@dataclass(frozen=True)
class Candidate:
    info: zipfile.ZipInfo
    class_name: str


def shown(name: str) -> str:
    """An entry name for a message: quoted, and cut short when a hostile zip makes it long."""
    return repr(name if len(name) <= 200 else name[:200] + "...")


# ---------------------------------------------------------------- the index: names, kinds, sizes


def check_entry(info: zipfile.ZipInfo) -> None:
    """Raise ``UnsafeArchive`` for a name that could land outside its folder, a link, or an encrypted entry."""
    name = info.orig_filename  # zipfile cuts ``filename`` at a NUL; the original keeps it
    if "\0" in name:
        raise UnsafeArchive(f"the entry {shown(name)} has a NUL character in its name")
    if "\\" in name:
        raise UnsafeArchive(
            f"the entry {shown(name)} uses backslashes; zip paths use '/' (make the zip with a standard tool)"
        )
    if name.startswith("/") or _DRIVE.match(name):
        raise UnsafeArchive(f"the entry {shown(name)} has an absolute path; paths must be relative (cat/1.jpg)")
    parts = name.removesuffix("/").split("/")
    if ".." in parts:
        raise UnsafeArchive(f"the entry {shown(name)} climbs out of the archive with '..'")
    if "" in parts:
        raise UnsafeArchive(f"the entry {shown(name)} has an empty folder name ('//')")
    kind = stat.S_IFMT(info.external_attr >> 16)
    if kind and kind not in (stat.S_IFREG, stat.S_IFDIR):
        what = "a symbolic link" if kind == stat.S_IFLNK else "a special file"
        raise UnsafeArchive(f"the entry {shown(name)} is {what}; only plain files and folders are accepted")
    if info.flag_bits & ENCRYPTED_FLAG:
        raise UnsafeArchive(f"the entry {shown(name)} is encrypted; send an archive without a password")


def check_sizes(infos: list[zipfile.ZipInfo], limits: DatasetLimits, archive_bytes: int) -> None:
    """Entry count, total uncompressed size and compression ratios, from the declared sizes alone."""
    if len(infos) > limits.max_files:
        raise ArchiveTooLarge(
            f"the archive holds {len(infos):,} entries (files and folders), the limit is {limits.max_files:,}"
        )
    total = sum(info.file_size for info in infos)
    if total > limits.max_uncompressed_bytes:
        raise ArchiveTooLarge(
            f"the archive unpacks to {total:,} bytes, the limit is {limits.max_uncompressed_bytes:,}; "
            "split the dataset or send smaller images"
        )
    ratio = limits.max_compression_ratio
    for info in infos:
        if info.file_size > RATIO_GRACE_BYTES and info.file_size > ratio * info.compress_size:
            raise ArchiveTooLarge(
                f"the entry {shown(info.filename)} unpacks from {info.compress_size:,} to {info.file_size:,} bytes, "
                f"a compression ratio over the limit of {ratio:g} (a zip bomb?)"
            )
    compressed = sum(info.compress_size for info in infos)
    if total > RATIO_GRACE_BYTES and total > ratio * compressed:
        raise ArchiveTooLarge(
            f"the archive unpacks from {compressed:,} to {total:,} bytes, a compression ratio over the limit "
            f"of {ratio:g} (a zip bomb?)"
        )
    if compressed > archive_bytes:  # entries sharing their data: the overlapping-entries bomb
        raise UnsafeArchive(f"the entries declare {compressed:,} compressed bytes in a {archive_bytes:,}-byte file")


# ---------------------------------------------------------------- the layout: which folder is a class


def class_name_problem(name: str) -> str | None:
    if len(name) > MAX_CLASS_NAME_CHARS or len(name.encode()) > MAX_CLASS_NAME_BYTES:
        return f"the class folder name {shown(name)} is longer than {MAX_CLASS_NAME_CHARS} characters"
    if _CONTROL.search(name):
        return f"the class folder name {shown(name)} contains control characters"
    return None


def plan_layout(infos: list[zipfile.ZipInfo]) -> tuple[list[Candidate], list[SkippedFile]]:
    """Files inside class folders, and the files left out (hidden, system, or outside any class folder).

    A class is a top-level folder (``cat/1.jpg``), or a folder inside one wrapping top folder when every
    file lies under that folder and it has sub-folders (``pets/cat/1.jpg``). Files deeper inside a class
    folder belong to that class. Folder entries themselves are not files and are not listed.
    """
    skipped: list[SkippedFile] = []
    visible: list[tuple[zipfile.ZipInfo, list[str]]] = []
    for info in infos:
        if info.is_dir():
            continue
        parts = [part for part in info.filename.split("/") if part != "."]  # "./cat/1.jpg" from some tools
        if any(part.startswith(".") or part in SYSTEM_NAMES for part in parts):
            skipped.append(SkippedFile(info.filename, "hidden or system file"))
        elif parts:
            visible.append((info, parts))
    wrapped = len({parts[0] for _, parts in visible}) == 1 and any(len(parts) > 2 for _, parts in visible)
    candidates: list[Candidate] = []
    for info, parts in visible:
        inner = parts[1:] if wrapped else parts
        if len(inner) < 2:
            skipped.append(
                SkippedFile(info.filename, "not inside a class folder (put it in a folder named after its class)")
            )
        else:
            candidates.append(Candidate(info, inner[0]))
    return candidates, skipped


def colliding_names(class_names: list[str]) -> list[str]:
    """Class folders that one case-insensitive (or Unicode-normalizing) filesystem would make one: ``Cat`` and
    ``cat``, or ``é`` composed and decomposed. Stored as they are, they would merge or clash on macOS and Windows
    volumes, and training would see one class where the upload meant two."""
    groups: dict[str, list[str]] = {}
    for name in class_names:
        groups.setdefault(unicodedata.normalize("NFC", name).casefold(), []).append(name)
    return [
        f"the class folders {' and '.join(shown(name) for name in names)} differ only in letter case (or in how "
        "their accents are encoded): on a case-insensitive filesystem they are one folder; merge them or rename one"
        for names in groups.values()
        if len(names) > 1
    ]


def layout_problems(class_names: list[str]) -> list[str]:
    problems = [problem for name in class_names if (problem := class_name_problem(name))]
    problems += colliding_names(class_names)
    if not class_names:
        problems.append(
            "no files inside class folders; put each class's images in a folder named after the class "
            "(cat/1.jpg, dog/2.jpg)"
        )
    elif len(class_names) == 1:
        problems.append(f"only one class folder ({class_names[0]}); a classifier needs at least two")
    return problems


# ---------------------------------------------------------------- the content: one image at a time


def read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    """The member's bytes, never more than its declared size (``UnsafeArchive`` if it tries)."""
    chunks: list[bytes] = []
    received = 0
    with archive.open(info) as member:
        while chunk := member.read(READ_CHUNK):
            received += len(chunk)
            if received > info.file_size:
                raise UnsafeArchive(
                    f"the entry {shown(info.filename)} unpacks past its declared size of {info.file_size:,} bytes"
                )
            chunks.append(chunk)
    return b"".join(chunks)


def read_image(archive: zipfile.ZipFile, candidate: Candidate, limits: DatasetLimits) -> AcceptedImage | SkippedFile:
    info = candidate.info
    if info.file_size == 0:
        return SkippedFile(info.filename, "empty file")
    if info.file_size > limits.decode.max_bytes:
        return SkippedFile(
            info.filename, f"{info.file_size:,} bytes, over the limit of {limits.decode.max_bytes:,} for one image"
        )
    try:
        data = read_member(archive, info)
    except UnsafeArchive:
        raise
    # zipfile raises BadZipFile (CRC mismatch, bad local header), zlib.error, EOFError or NotImplementedError
    # (a compression method it lacks) for a damaged member; the other members may still be fine.
    except Exception as error:
        return SkippedFile(info.filename, f"damaged in the archive ({error})")
    try:
        image = decode_image(data, limits.decode)
    except ImageError as error:
        return SkippedFile(info.filename, str(error))
    image_format = str(image.format)
    image.close()
    extension = FORMAT_EXTENSIONS.get(image_format)
    if extension is None:
        return SkippedFile(info.filename, f"{image_format} images cannot be stored for training")
    return AcceptedImage(info.filename, candidate.class_name, data, extension)


def count_problems(counts: dict[str, int], unreadable: list[SkippedFile], minimum: int) -> list[str]:
    problems = []
    with_images = [name for name, count in counts.items() if count]
    if len(with_images) < 2:
        listed = f" ({', '.join(with_images)})" if with_images else ""
        problems.append(f"{len(with_images)} class(es) with readable images{listed}; a classifier needs at least two")
    too_few = [f"{name} ({count})" for name, count in counts.items() if count < minimum]
    if too_few:
        problems.append(f"classes with fewer than {minimum} readable images: {', '.join(too_few)}")
    if problems and unreadable:
        first = unreadable[0]
        problems.append(f"{len(unreadable)} file(s) were unreadable, e.g. {first.path}: {first.reason}")
    return problems


def validate_archive(
    path: Path, limits: DatasetLimits, keep: Callable[[AcceptedImage], None] | None = None
) -> ArchiveReport:
    """Check the zip at ``path`` and hand each accepted image to ``keep`` (one at a time, in archive order).

    Raises ``UnsafeArchive``, ``ArchiveTooLarge`` (both before anything is decompressed, except a member that
    unpacks past its declared size) or ``DatasetRejected`` (every problem listed). ``keep`` may have been
    called for some images before a ``DatasetRejected``: a caller that stores them must discard them then.
    """
    with open_archive(path, limits) as archive:
        infos = archive.infolist()
        for info in infos:
            check_entry(info)
        check_sizes(infos, limits, archive_bytes=path.stat().st_size)
        candidates, skipped = plan_layout(infos)
        counts = dict.fromkeys(sorted({candidate.class_name for candidate in candidates}), 0)
        if problems := layout_problems(list(counts)):
            raise DatasetRejected(problems)
        unreadable: list[SkippedFile] = []
        total_bytes = 0
        for candidate in candidates:
            outcome = read_image(archive, candidate, limits)
            if isinstance(outcome, SkippedFile):
                unreadable.append(outcome)
                continue
            counts[outcome.class_name] += 1
            total_bytes += len(outcome.data)
            if keep is not None:
                keep(outcome)
    if problems := count_problems(counts, unreadable, limits.min_images_per_class):
        raise DatasetRejected(problems)
    return ArchiveReport(classes=counts, files=sum(counts.values()), bytes=total_bytes, skipped=skipped + unreadable)
