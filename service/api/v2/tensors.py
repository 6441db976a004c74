"""V2 tensors on the wire: datatypes, JSON ``data`` and binary sections into numpy, and BYTES elements back.

Pure functions without HTTP. Every problem raises ``InvalidTensor`` with a message that starts with where
the tensor is in the request (``inputs[0] 'input'``) and names the field at fault.

The binary tensor extension's layout: row-major, packed, little-endian; BOOL is one byte per element; a BYTES
element is a 4-byte little-endian length followed by that many bytes.
"""

import math
import struct
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

BYTES = "BYTES"
NUMERIC: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype("?"),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}
DATATYPES = (*NUMERIC, BYTES)
_LENGTH = struct.Struct("<I")


class InvalidTensor(ValueError):
    """A tensor whose datatype, shape and data disagree, or that the model does not take."""


def check_datatype(where: str, datatype: str) -> None:
    if datatype not in NUMERIC and datatype != BYTES:
        raise InvalidTensor(f"{where}: unknown datatype {datatype!r} (known: {', '.join(DATATYPES)})")


def element_count(where: str, shape: Sequence[int]) -> int:
    if any(dim < 0 for dim in shape):
        raise InvalidTensor(f"{where}: shape {list(shape)} has a negative dimension; send the actual sizes")
    return math.prod(shape)


def numeric_from_binary(where: str, datatype: str, shape: Sequence[int], section: memoryview) -> np.ndarray:
    """The section as a ``shape`` array of ``datatype``, without a copy when it is aligned (it is read-only)."""
    dtype = NUMERIC[datatype]
    count = element_count(where, shape)
    if len(section) != count * dtype.itemsize:
        raise InvalidTensor(
            f"{where}: shape {list(shape)} holds {count} {datatype} elements = {count * dtype.itemsize} bytes, "
            f"but parameters.binary_data_size is {len(section)}"
        )
    array = np.frombuffer(section, dtype=dtype)
    if array.ctypes.data % dtype.alignment:  # the JSON header has any length: realign, one copy
        array = array.copy()
    return array.reshape(shape)


def numeric_from_json(where: str, datatype: str, shape: Sequence[int], data: Any) -> np.ndarray:
    """JSON ``data`` (flat or nested, row-major) as a ``shape`` array of ``datatype``."""
    count = element_count(where, shape)
    try:
        values = np.asarray(data)
    except ValueError as error:  # ragged nesting
        raise InvalidTensor(f"{where}: data is not a rectangular array: {error}") from error
    if values.size and values.dtype.kind not in "biuf":
        raise InvalidTensor(f"{where}: data must hold {datatype} numbers, found {values.dtype.kind!r} values")
    if values.size != count:
        raise InvalidTensor(f"{where}: shape {list(shape)} has {count} elements but data has {values.size}")
    return values.astype(NUMERIC[datatype], copy=False).reshape(shape)


def bytes_from_binary(where: str, shape: Sequence[int], section: memoryview) -> list[bytes]:
    """The length-prefixed BYTES elements of a binary section, checked against ``shape``."""
    count = element_count(where, shape)
    elements: list[bytes] = []
    offset, end = 0, len(section)
    while offset < end:
        if end - offset < _LENGTH.size:
            raise InvalidTensor(
                f"{where}: BYTES element {len(elements)} is cut off inside its 4-byte length prefix "
                "(check parameters.binary_data_size)"
            )
        (length,) = _LENGTH.unpack_from(section, offset)
        offset += _LENGTH.size
        if length > end - offset:
            raise InvalidTensor(
                f"{where}: BYTES element {len(elements)} declares {length} bytes but only {end - offset} remain "
                "in its parameters.binary_data_size (each element is a 4-byte little-endian length, then the bytes)"
            )
        elements.append(bytes(section[offset : offset + length]))
        offset += length
    if len(elements) != count:
        raise InvalidTensor(f"{where}: shape {list(shape)} has {count} elements but the data holds {len(elements)}")
    return elements


def bytes_from_json(where: str, shape: Sequence[int], data: Any) -> list[bytes]:
    """JSON ``data`` of a BYTES tensor: strings (flat or nested), each UTF-8 encoded."""
    count = element_count(where, shape)
    elements: list[bytes] = []
    pending = [data]
    while pending:  # iterative flattening: no recursion limit to hit on deep nesting
        item = pending.pop()
        if isinstance(item, list):
            pending.extend(reversed(item))
        elif isinstance(item, str):
            elements.append(item.encode())
        else:
            raise InvalidTensor(f"{where}: data of a BYTES tensor must hold strings, found {type(item).__name__}")
    if len(elements) != count:
        raise InvalidTensor(f"{where}: shape {list(shape)} has {count} elements but data has {len(elements)}")
    return elements


def serialize_bytes(elements: Iterable[bytes]) -> bytes:
    """BYTES elements in the binary layout: each one's 4-byte little-endian length, then its bytes."""
    return b"".join(_LENGTH.pack(len(element)) + element for element in elements)
