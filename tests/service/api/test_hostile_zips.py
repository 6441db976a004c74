"""Hostile zips for POST /v1/datasets, over HTTP: each refused with a reason, nothing written outside the data root.

Each archive is built here and uploaded as the raw body to a real server. Refused, each gets its status and a
detail naming the problem (docs/api.md, Datasets: 400 unsafe, 413 over a cap, 422 cannot train):

- zip-slip names (``../x``, ``/abs``, ``C:\\x``, ``C:/x``, ``a/../../b``) and symbolic links: 400, from the index,
  before anything is unpacked;
- a zip bomb (one entry of 50 MB of zeros, a few dozen KB packed): 413, from the declared sizes;
- 100,000 tiny files (over ``IMGCLS_DATASET_MAX_FILES``, 50,000): 413 from the zip's end record, before its index is
  read (the message is open_archive's, which the index checks never give);
- class folders that differ only in case (``Cat/`` and ``cat/``): 422, since a case-insensitive filesystem would make
  them one class.

A zip inside the zip is not refused: it is a file that is not an image, so it is skipped, listed with that reason,
and never opened; the upload succeeds on its other images (201), and the inner zip's own hostile entries
(a ``../`` path here) never reach the disk.

The parent of the data root is listed before and after: nothing appears outside the data root, and inside it only
the accepted dataset, with no staging folder or upload file left over.
"""

import io
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from service.settings import ServiceSettings
from tests.service.api.server import running_server
from tests.service.api.test_classify import assert_problem
from tests.service.datasets.zips import CENTRAL_HEADER, folder_entries, image_bytes, symlink, zip_bytes

GOOD = folder_entries({"cat": 5, "dog": 5})
ZIP = {"content-type": "application/zip"}


def refused_cases(root: Path) -> dict[str, tuple[bytes, int, list[str]]]:
    """name -> (the zip, status, words of the detail)."""
    escape = root / "escaped.png"  # an absolute path a zip-slip would write to: it must never exist
    many = zip_bytes([(f"c/{i}", b"") for i in range(100_000)], compression=zipfile.ZIP_STORED)
    cases = {
        "../x": ("../x.png", 400, ["climbs out of the archive with '..'"]),
        "/abs": (str(escape), 400, ["has an absolute path"]),
        "C:\\x": ("C:\\x.png", 400, ["uses backslashes"]),
        "C:/x": ("C:/x.png", 400, ["has an absolute path"]),
        "a/../../b": ("cat/../../b.png", 400, ["climbs out of the archive with '..'"]),
    }
    built = {
        name: (zip_bytes([*GOOD, (entry, image_bytes())]), status, words)
        for name, (entry, status, words) in cases.items()
    }
    return {
        **built,
        "symlink to a file": (zip_bytes([*GOOD, symlink("cat/x.png", "/etc/passwd")]), 400, ["is a symbolic link"]),
        "symlink as a folder": (zip_bytes([*GOOD, symlink("dog/", "/")]), 400, ["is a symbolic link"]),
        "zip bomb": (
            zip_bytes([*GOOD, ("dog/bomb.png", b"\0" * 50_000_000)]),
            413,
            ["'dog/bomb.png' unpacks from", "to 50,000,000 bytes", "(a zip bomb?)"],
        ),
        "100,000 tiny files": (
            many,
            413,
            ["holds 100,000 entries", "the limit is 50,000; split the dataset or remove files"],
        ),
        "Cat/ and cat/": (
            zip_bytes([*GOOD, *[(f"Cat/{i}.png", image_bytes(50 + i)) for i in range(5)]]),
            422,
            ["the class folders 'Cat' and 'cat' differ only in letter case"],
        ),
    }


def files_under(folder: Path) -> set[Path]:
    return {path.relative_to(folder) for path in folder.rglob("*")}


@pytest.fixture
def data_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    settings = ServiceSettings(
        model_root=tmp_path / "models", data_root=tmp_path / "data", auth_enabled=False, intra_op_threads=1
    )
    with running_server(settings, wait_ready=False) as url:  # datasets need no model
        yield url, tmp_path / "data"


def test_hostile_zips_are_refused_with_a_reason_and_write_nothing_outside(data_server: tuple[str, Path]) -> None:
    server, data_root = data_server
    parent = data_root.parent
    outside_before = {path for path in files_under(parent) if path.parts[:1] != ("data",)}
    cases = refused_cases(parent)
    with httpx.Client(base_url=server, timeout=120) as client:
        for name, (body, status, words) in cases.items():
            response = client.post("/v1/datasets", content=body, headers=ZIP, params={"name": name})
            try:
                assert_problem(response, status, *words)
            except AssertionError as error:
                raise AssertionError(f"{name}: {error}") from error

        # a zip inside the zip: skipped with its reason, never opened
        inner = zip_bytes([("../../inner-escaped.png", image_bytes()), *folder_entries({"x": 5, "y": 5})])
        nested = client.post("/v1/datasets", content=zip_bytes([*GOOD, ("cat/more.zip", inner)]), headers=ZIP)
        assert nested.status_code == 201, nested.text
        record = nested.json()
        assert record["classes"] == {"cat": 5, "dog": 5}
        assert record["skipped"] == [
            {"path": "cat/more.zip", "reason": "the data is not an image in a known format; send JPEG or PNG or WEBP"}
        ]

    assert {path for path in files_under(parent) if path.parts[:1] != ("data",)} == outside_before
    assert not (parent / "escaped.png").exists()
    stored = files_under(data_root / "datasets")
    assert {path.parts[0] for path in stored} == {record["id"]}  # no .staging-, .upload- or .deleting- leftovers
    images = data_root / "datasets" / record["id"] / "images"
    assert sorted(path.name for path in images.iterdir()) == ["cat", "dog"]
    assert sum(1 for path in images.rglob("*") if path.is_file()) == 10
    assert not list(parent.rglob("*escaped*"))


def test_the_entry_count_is_refused_before_the_index_is_read(data_server: tuple[str, Path]) -> None:
    """The 100,000 entries are counted from the end record alone: with every index entry wiped (zipfile could not
    read the index at all), the upload is still refused for its count, not for a damaged index."""
    server, data_root = data_server
    data = bytearray(zip_bytes([(f"c/{i}", b"") for i in range(100_000)], compression=zipfile.ZIP_STORED))
    first = data.find(CENTRAL_HEADER)
    data[first:] = data[first:].replace(CENTRAL_HEADER, b"JUNK")  # the end records keep their own signatures
    with pytest.raises(zipfile.BadZipFile):
        zipfile.ZipFile(io.BytesIO(bytes(data)))
    response = httpx.post(f"{server}/v1/datasets", content=bytes(data), headers=ZIP, timeout=120)
    assert_problem(response, 413, "holds 100,000 entries", "the limit is 50,000; split the dataset or remove files")
    assert [path.name for path in (data_root / "datasets").iterdir()] == []  # the upload file is gone too
