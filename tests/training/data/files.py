"""Builders for real data files on disk (IDX files, images), shared by the data tests."""

import gzip
import struct
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

_IDX_TYPE_CODES = {
    np.dtype(np.uint8): 0x08,
    np.dtype(np.int8): 0x09,
    np.dtype(np.int16): 0x0B,
    np.dtype(np.int32): 0x0C,
    np.dtype(np.float32): 0x0D,
    np.dtype(np.float64): 0x0E,
}


def encode_idx(array: np.ndarray) -> bytes:
    """IDX bytes: magic with the type code of ``array.dtype``, the dimensions, big-endian data."""
    header = struct.pack(">HBB", 0, _IDX_TYPE_CODES[array.dtype], array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_idx(path: Path, array: np.ndarray, *, gz: bool = False) -> Path:
    data = encode_idx(array)
    path.write_bytes(gzip.compress(data, compresslevel=1) if gz else data)
    return path


def save_image(path: Path, pixels: np.ndarray, **save_options: Any) -> Path:
    """Save uint8 (H, W) or (H, W, 3) pixels; the format follows the suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, **save_options)
    return path


def random_pixels(seed: int, height: int, width: int, channels: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (height, width) if channels == 1 else (height, width, channels)
    return rng.integers(0, 256, size=shape, dtype=np.uint8)
