import os
import struct
import zipfile
from pathlib import Path

import pytest

from service.datasets import ArchiveTooLarge, DatasetLimits, DatasetRejected, UnsafeArchive, validate_archive
from service.datasets.validate import AcceptedImage
from service.imaging import DecodeLimits
from tests.service.datasets.zips import (
    encrypted,
    folder_entries,
    image_bytes,
    patch_central,
    repeated_index,
    symlink,
    with_zip64_end,
    write_zip,
    zip_bytes,
)

LIMITS = DatasetLimits()  # the defaults: 5 images per class, JPEG/PNG/WEBP
GOOD = folder_entries({"cat": 5, "dog": 5})


def reasons(report_skipped: list) -> dict[str, str]:
    return {skipped.path: skipped.reason for skipped in report_skipped}


# ---------------------------------------------------------------- what is accepted, and what is skipped


def test_class_folders_are_counted_and_the_rest_skipped_with_reasons(tmp_path: Path) -> None:
    extras = [
        ("readme.txt", b"about the data"),
        ("cat/notes.txt", b"not an image"),
        ("cat/cut.png", image_bytes(7)[:40]),
        ("dog/tiny.gif", image_bytes(8, image_format="GIF")),
        ("dog/empty.png", b""),
        ("dog/deeper/more/5.png", image_bytes(9)),
        ("__MACOSX/cat/._0.png", b"\x00\x05\x16\x07 resource fork"),
        ("cat/.DS_Store", b"\x00\x00\x00\x01Bud1"),
        (".git/config", b"[core]"),
        ("dog/Thumbs.db", b"cache"),
    ]
    kept: list[AcceptedImage] = []
    report = validate_archive(write_zip(tmp_path / "a.zip", [*GOOD, *extras]), LIMITS, kept.append)

    assert report.classes == {"cat": 5, "dog": 6}  # the file two folders down counts for dog
    assert report.files == 11 == len(kept)
    assert report.bytes == sum(len(image.data) for image in kept)
    assert {image.extension for image in kept} == {".png"}
    skipped = reasons(report.skipped)
    assert skipped["readme.txt"].startswith("not inside a class folder")
    assert "not an image" in skipped["cat/notes.txt"]
    assert "truncated or corrupt" in skipped["cat/cut.png"]
    assert "GIF images are not accepted" in skipped["dog/tiny.gif"]
    assert skipped["dog/empty.png"] == "empty file"
    for hidden in ("__MACOSX/cat/._0.png", "cat/.DS_Store", ".git/config", "dog/Thumbs.db"):
        assert skipped[hidden] == "hidden or system file"
    assert len(report.skipped) == len(extras) - 1


def test_one_wrapping_top_folder_is_stripped(tmp_path: Path) -> None:
    entries = [*folder_entries({"cat": 5, "dog": 5}, prefix="pets/"), ("pets/LICENSE", b"CC-BY")]
    report = validate_archive(write_zip(tmp_path / "a.zip", entries), LIMITS)
    assert report.classes == {"cat": 5, "dog": 5}
    assert list(reasons(report.skipped)) == ["pets/LICENSE"]
    assert reasons(report.skipped)["pets/LICENSE"].startswith("not inside a class folder")


def test_folder_entries_and_dot_slash_prefixes_are_harmless(tmp_path: Path) -> None:
    entries = [("./cat/", b""), ("./dog/", b""), *[(f"./{name}", data) for name, data in GOOD]]
    assert validate_archive(write_zip(tmp_path / "a.zip", entries), LIMITS).classes == {"cat": 5, "dog": 5}


def test_the_format_decides_the_stored_extension(tmp_path: Path) -> None:
    entries = [*GOOD, ("cat/photo.png", image_bytes(3, image_format="JPEG")), ("dog/noext", image_bytes(4))]
    kept: list[AcceptedImage] = []
    validate_archive(write_zip(tmp_path / "a.zip", entries), LIMITS, kept.append)
    extensions = {image.path: image.extension for image in kept}
    assert (extensions["cat/photo.png"], extensions["dog/noext"]) == (".jpg", ".png")


def test_an_image_over_the_byte_cap_is_skipped_unread(tmp_path: Path) -> None:
    big = image_bytes(5, size=(64, 64))
    limits = DatasetLimits(decode=DecodeLimits(max_bytes=len(big) - 1))
    report = validate_archive(write_zip(tmp_path / "a.zip", [*GOOD, ("cat/big.png", big)]), limits)
    assert "over the limit" in reasons(report.skipped)["cat/big.png"]


def test_a_member_that_lies_about_its_size_is_read_no_further(tmp_path: Path) -> None:
    data = zip_bytes([*GOOD, ("cat/liar.png", b"\0" * 5_000_000)])
    path = tmp_path / "a.zip"
    path.write_bytes(patch_central(data, len(GOOD), 24, "<I", 100))  # declares 100 bytes
    report = validate_archive(path, LIMITS)
    assert reasons(report.skipped)["cat/liar.png"] == "damaged in the archive (Bad CRC-32 for file 'cat/liar.png')"
    assert report.classes == {"cat": 5, "dog": 5}


# ---------------------------------------------------------------- unsafe archives: refused whole


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("/etc/cron.d/x.png", "absolute path"),
        ("C:/Windows/x.png", "absolute path"),
        ("../../x.png", "'..'"),
        ("cat/../../x.png", "'..'"),
        ("cat\\..\\x.png", "backslashes"),
        ("cat//x.png", "empty folder name"),
    ],
)
def test_names_that_could_escape_are_refused(tmp_path: Path, name: str, words: str) -> None:
    with pytest.raises(UnsafeArchive, match=words):
        validate_archive(write_zip(tmp_path / "a.zip", [*GOOD, (name, image_bytes())]), LIMITS)


def test_a_nul_in_a_name_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "a.zip"
    path.write_bytes(zip_bytes([*GOOD, ("cat/evil#.png", image_bytes())]).replace(b"evil#", b"evil\0"))
    assert zipfile.ZipFile(path).namelist()[-1] == "cat/evil"  # what zipfile shows: cut at the NUL
    with pytest.raises(UnsafeArchive, match="NUL"):
        validate_archive(path, LIMITS)


def test_links_are_refused(tmp_path: Path) -> None:
    with pytest.raises(UnsafeArchive, match="symbolic link"):
        validate_archive(write_zip(tmp_path / "a.zip", [*GOOD, symlink("cat/x.png", "/etc/passwd")]), LIMITS)


def test_encrypted_entries_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "a.zip"
    path.write_bytes(encrypted(zip_bytes(GOOD), 3))
    with pytest.raises(UnsafeArchive, match="encrypted"):
        validate_archive(path, LIMITS)


@pytest.mark.parametrize("content", [b"", b"hello, not a zip", b"PK\x03\x04 a local header and nothing else"])
def test_not_a_zip(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "a.zip"
    path.write_bytes(content)
    with pytest.raises(UnsafeArchive, match="not a zip archive"):
        validate_archive(path, LIMITS)


def test_a_truncated_zip_is_refused(tmp_path: Path) -> None:
    data = zip_bytes(GOOD)
    path = tmp_path / "a.zip"
    path.write_bytes(data[: len(data) - 30])  # the end record is cut
    with pytest.raises(UnsafeArchive):
        validate_archive(path, LIMITS)


def test_overlapping_entries_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "a.zip"
    path.write_bytes(repeated_index(zip_bytes([("cat/x.png", os.urandom(100_000))]), 4))
    assert len(zipfile.ZipFile(path).infolist()) == 4
    with pytest.raises(UnsafeArchive, match="compressed bytes in a"):
        validate_archive(path, LIMITS)


# ---------------------------------------------------------------- caps: refused before anything is read


def test_too_many_entries(tmp_path: Path) -> None:
    with pytest.raises(ArchiveTooLarge, match=r"holds 10 entries .* the limit is 9"):
        validate_archive(write_zip(tmp_path / "a.zip", GOOD), DatasetLimits(max_files=9))


def test_zip64_archives_are_read_and_their_counts_checked(tmp_path: Path) -> None:
    path = tmp_path / "a.zip"
    path.write_bytes(with_zip64_end(zip_bytes(GOOD)))
    assert validate_archive(path, LIMITS).classes == {"cat": 5, "dog": 5}
    path.write_bytes(with_zip64_end(zip_bytes(GOOD), entries=10_000_000))  # zipfile would build 10M entries
    with pytest.raises(ArchiveTooLarge, match="holds 10,000,000 entries"):
        validate_archive(path, LIMITS)


def test_an_index_larger_than_its_declared_entries_need_is_refused(tmp_path: Path) -> None:
    data = bytearray(zip_bytes(folder_entries({"cat": 15, "dog": 15})))
    end = data.rfind(b"PK\x05\x06")
    struct.pack_into("<HH", data, end + 8, 1, 1)  # zipfile reads the whole index whatever the count says
    path = tmp_path / "a.zip"
    path.write_bytes(data)
    with pytest.raises(UnsafeArchive, match=r"index is .* bytes for 1 entries"):
        validate_archive(path, LIMITS)


def test_too_many_bytes_unpacked(tmp_path: Path) -> None:
    total = sum(len(data) for _, data in GOOD)
    with pytest.raises(ArchiveTooLarge, match=f"unpacks to {total:,} bytes"):
        validate_archive(write_zip(tmp_path / "a.zip", GOOD), DatasetLimits(max_uncompressed_bytes=total - 1))


def test_a_bomb_member_is_refused_before_anything_is_read(tmp_path: Path) -> None:
    kept: list[AcceptedImage] = []
    path = write_zip(tmp_path / "a.zip", [*GOOD, ("dog/bomb.png", b"\0" * 50_000_000)])
    assert path.stat().st_size < 200_000
    with pytest.raises(ArchiveTooLarge, match=r"'dog/bomb.png' unpacks from .* to 50,000,000 bytes"):
        validate_archive(path, LIMITS, kept.append)
    assert kept == []  # not even the good images before it in the archive were read


def test_many_small_members_are_held_to_the_overall_ratio(tmp_path: Path) -> None:
    zeros = [(f"cat/zeros{i}.png", b"\0" * 900_000) for i in range(20)]  # each under the per-entry grace size
    with pytest.raises(ArchiveTooLarge, match=r"the archive unpacks from .* to 18,0"):
        validate_archive(write_zip(tmp_path / "a.zip", [*GOOD, *zeros]), LIMITS)


# ---------------------------------------------------------------- datasets that cannot train


def test_one_class_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(DatasetRejected, match=r"only one class folder \(cat\)"):
        validate_archive(write_zip(tmp_path / "a.zip", folder_entries({"cat": 6})), LIMITS)


def test_no_class_folders_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(DatasetRejected, match="no files inside class folders"):
        validate_archive(write_zip(tmp_path / "a.zip", [("a.png", image_bytes())]), LIMITS)


def test_every_class_with_too_few_images_is_named(tmp_path: Path) -> None:
    entries = [*folder_entries({"cat": 5, "dog": 2, "owl": 4}), ("owl/broken.png", b"\x89PNG\r\n\x1a\n")]
    with pytest.raises(DatasetRejected) as caught:
        validate_archive(write_zip(tmp_path / "a.zip", entries), LIMITS)
    message = str(caught.value)
    assert "classes with fewer than 5 readable images: dog (2), owl (4)" in message
    assert "1 file(s) were unreadable, e.g. owl/broken.png" in message
    assert len(caught.value.problems) == 2


def test_a_class_of_unreadable_files_counts_as_missing(tmp_path: Path) -> None:
    entries = [*folder_entries({"cat": 5}), *[(f"dog/{i}.txt", b"text") for i in range(5)]]
    with pytest.raises(DatasetRejected, match=r"1 class\(es\) with readable images \(cat\)"):
        validate_archive(write_zip(tmp_path / "a.zip", entries), LIMITS)


@pytest.mark.parametrize(
    ("folder", "words"),
    [("x" * 101, "longer than 100 characters"), ("é" * 101, "longer than 100"), ("ca\x01t", "control characters")],
)
def test_unusable_class_names_are_rejected(tmp_path: Path, folder: str, words: str) -> None:
    entries = [*GOOD, *[(f"{folder}/{i}.png", image_bytes(i)) for i in range(5)]]
    with pytest.raises(DatasetRejected, match=words):
        validate_archive(write_zip(tmp_path / "a.zip", entries), LIMITS)


def test_hidden_class_folders_are_skipped_not_classes(tmp_path: Path) -> None:
    entries = [*GOOD, *[(f".trash/{i}.png", image_bytes(i)) for i in range(5)]]
    report = validate_archive(write_zip(tmp_path / "a.zip", entries), LIMITS)
    assert report.classes == {"cat": 5, "dog": 5}
    assert reasons(report.skipped)[".trash/0.png"] == "hidden or system file"


@pytest.mark.parametrize(
    ("folders", "shown"),
    [
        (("Cat", "cat"), "'Cat' and 'cat'"),
        (("DOG", "Dog", "dog"), "'DOG' and 'Dog' and 'dog'"),
        (("caf\u00e9", "cafe\u0301"), "'cafe\u0301' and 'caf\u00e9'"),  # e + combining accent, and é composed
    ],
)
def test_class_folders_that_differ_only_in_case_are_rejected(
    tmp_path: Path, folders: tuple[str, ...], shown: str
) -> None:
    """On a case-insensitive (or normalizing) filesystem they are one folder; training would see one class."""
    entries = [*folder_entries({"owl": 5})]
    for position, folder in enumerate(folders):
        entries += [(f"{folder}/{i}.png", image_bytes(100 * position + i)) for i in range(5)]
    with pytest.raises(DatasetRejected, match="differ only in letter case") as caught:
        validate_archive(write_zip(tmp_path / "a.zip", entries), LIMITS)
    assert f"the class folders {shown} differ only in letter case" in str(caught.value)
    assert len(caught.value.problems) == 1


def test_a_zip_inside_the_zip_is_skipped_unopened(tmp_path: Path) -> None:
    inner = zip_bytes([("../../escaped.png", image_bytes()), *folder_entries({"x": 5, "y": 5})])
    kept: list[AcceptedImage] = []
    report = validate_archive(write_zip(tmp_path / "a.zip", [*GOOD, ("cat/more.zip", inner)]), LIMITS, kept.append)
    assert report.classes == {"cat": 5, "dog": 5}
    assert reasons(report.skipped) == {
        "cat/more.zip": "the data is not an image in a known format; send JPEG or PNG or WEBP"
    }
    assert sorted(image.path for image in kept) == sorted(name for name, _ in GOOD)
