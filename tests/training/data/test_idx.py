import gzip
from pathlib import Path

import numpy as np
import pytest

from tests.training.data.files import encode_idx, write_idx
from training.data.idx import read_idx
from training.errors import UnusableData

IMAGES = np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5)
LABELS = np.array([0, 9, 3, 255], dtype=np.uint8)


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("array", [IMAGES, LABELS], ids=["images", "labels"])
def test_round_trip(tmp_path: Path, array: np.ndarray, gz: bool) -> None:
    path = write_idx(tmp_path / ("data-ubyte.gz" if gz else "data-ubyte"), array, gz=gz)
    loaded = read_idx(path, ndim=array.ndim)
    assert loaded.dtype == np.uint8
    np.testing.assert_array_equal(loaded, array)
    assert loaded.flags.writeable


def test_wider_types_come_back_native_endian(tmp_path: Path) -> None:
    array = np.array([[-1, 2**20], [7, -(2**30)]], dtype=np.int32)
    loaded = read_idx(write_idx(tmp_path / "ints", array))
    assert loaded.dtype == np.dtype(np.int32)  # native, not ">i4"
    np.testing.assert_array_equal(loaded, array)


def test_gzip_is_detected_by_content_not_name(tmp_path: Path) -> None:
    path = tmp_path / "labels-idx1-ubyte"  # no .gz suffix
    path.write_bytes(gzip.compress(encode_idx(LABELS)))
    np.testing.assert_array_equal(read_idx(path), LABELS)


def test_wrong_magic(tmp_path: Path) -> None:
    path = tmp_path / "not-idx"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    with pytest.raises(UnusableData, match=r"not-idx: magic number 0x89504e47 is not an IDX header"):
        read_idx(path)


def test_wrong_dimension_count(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "labels", LABELS)
    with pytest.raises(UnusableData, match="has 1 dimensions, expected 3"):
        read_idx(path, ndim=3)


@pytest.mark.parametrize("gz", [False, True])
def test_truncated_data(tmp_path: Path, gz: bool) -> None:
    data = encode_idx(IMAGES)[:-7]
    path = tmp_path / "images"
    path.write_bytes(gzip.compress(data) if gz else data)
    with pytest.raises(UnusableData, match=r"header 3x4x5 needs 60 data bytes, file has 53 \(truncated\)"):
        read_idx(path)


def test_trailing_bytes(tmp_path: Path) -> None:
    path = tmp_path / "images"
    path.write_bytes(encode_idx(IMAGES) + b"\0")
    with pytest.raises(UnusableData, match="trailing bytes"):
        read_idx(path)


def test_truncated_header(tmp_path: Path) -> None:
    path = tmp_path / "images"
    path.write_bytes(encode_idx(IMAGES)[:10])  # magic + 1.5 of 3 dimensions
    with pytest.raises(UnusableData, match="ends inside it"):
        read_idx(path)
    path.write_bytes(b"\0\0")
    with pytest.raises(UnusableData, match="too short for an IDX header"):
        read_idx(path)


def test_truncated_gzip_stream(tmp_path: Path) -> None:
    path = tmp_path / "images.gz"
    path.write_bytes(gzip.compress(encode_idx(IMAGES))[:-12])
    with pytest.raises(UnusableData, match=r"images\.gz: corrupt or truncated gzip data"):
        read_idx(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(UnusableData, match="no such file"):
        read_idx(tmp_path / "absent")
