"""Reader for the IDX format of MNIST and Fashion-MNIST.

Layout: a big-endian uint32 magic ``0x0000TTDD`` (two zero bytes, a type code ``TT``, the number of
dimensions ``DD``), then one big-endian uint32 per dimension, then the data in C order, big-endian.
Labels are ``0x00000801`` (uint8, 1-dim), images ``0x00000803`` (uint8, 3-dim).
"""

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from training.errors import UnusableData

# The type codes of the IDX specification, as big-endian numpy dtypes.
_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped when it starts with the gzip magic (whatever its name says)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise UnusableData(f"{path}: no such file; check the data directory") from None
    except OSError as error:
        raise UnusableData(f"{path}: cannot read ({error.strerror}); check its permissions") from None
    if not raw.startswith(_GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as error:
        raise UnusableData(
            f"{path}: corrupt or truncated gzip data ({error}); download or reinstall the file"
        ) from None


def read_idx(path: Path, *, ndim: int | None = None) -> np.ndarray:
    """Read one IDX file (gzipped or not) into a native-endian array of the header's shape.

    ``ndim``, when given, is the number of dimensions the caller expects (1 for labels, 3 for images).
    Raises ``UnusableData`` naming the file for: a bad magic number, an unknown type code, the wrong
    number of dimensions, or data shorter or longer than the header declares (a truncated download).
    """
    data = _read_bytes(path)
    if len(data) < 4:
        raise UnusableData(f"{path}: {len(data)} bytes, too short for an IDX header (truncated); reinstall the file")
    zero, type_code, dims = struct.unpack(">HBB", data[:4])
    if zero != 0 or type_code not in _IDX_DTYPES or dims == 0:
        raise UnusableData(
            f"{path}: magic number 0x{data[:4].hex()} is not an IDX header (labels are 0x00000801, "
            "images 0x00000803); point to the IDX file itself"
        )
    if ndim is not None and dims != ndim:
        raise UnusableData(
            f"{path}: IDX file has {dims} dimensions, expected {ndim}; check that this is the right file"
        )
    header_length = 4 + 4 * dims
    if len(data) < header_length:
        raise UnusableData(
            f"{path}: header declares {dims} dimensions but the file ends inside it (truncated); "
            "download or reinstall the file"
        )
    shape = struct.unpack(f">{dims}I", data[4:header_length])
    dtype = _IDX_DTYPES[type_code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    actual = len(data) - header_length
    if actual != expected:
        problem = "truncated" if actual < expected else "has trailing bytes"
        raise UnusableData(
            f"{path}: header {'x'.join(map(str, shape))} needs {expected} data bytes, file has {actual} "
            f"({problem}); download or reinstall the file"
        )
    # astype copies into a writable native-endian array (torch.from_numpy rejects read-only buffers).
    array = np.frombuffer(data, dtype=dtype, offset=header_length).reshape(shape)
    return array.astype(dtype.newbyteorder("="))
