import numpy as np
import pytest
from tritonclient.utils import deserialize_bytes_tensor, serialize_byte_tensor

from service.api.v2.tensors import (
    InvalidTensor,
    bytes_from_binary,
    bytes_from_json,
    check_datatype,
    numeric_from_binary,
    numeric_from_json,
    serialize_bytes,
)

WHERE = "inputs[0] 'x'"


def test_a_binary_section_becomes_an_array_without_a_copy_when_aligned() -> None:
    values = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    array = numeric_from_binary(WHERE, "FP32", (2, 3, 4), memoryview(values.tobytes()))
    np.testing.assert_array_equal(array, values)
    assert not array.flags.owndata  # a view of the body


def test_an_unaligned_section_is_realigned() -> None:
    values = np.linspace(-1, 1, 12, dtype=np.float32)
    body = b"{hdr}" + values.tobytes()  # a 5-byte header leaves the floats unaligned
    array = numeric_from_binary(WHERE, "FP32", (3, 4), memoryview(body)[5:])
    assert array.ctypes.data % 4 == 0
    np.testing.assert_array_equal(array.ravel(), values)


def test_a_binary_size_that_disagrees_with_the_shape_says_both() -> None:
    with pytest.raises(InvalidTensor, match=r"inputs\[0\] 'x': shape \[2, 2\] holds 4 FP32 elements = 16 bytes.*12"):
        numeric_from_binary(WHERE, "FP32", (2, 2), memoryview(bytes(12)))


def test_json_data_flat_or_nested() -> None:
    flat = numeric_from_json(WHERE, "FP32", (2, 2), [1, 2.5, 3, 4])
    nested = numeric_from_json(WHERE, "FP32", (2, 2), [[1, 2.5], [3, 4]])
    assert flat.dtype == np.float32
    np.testing.assert_array_equal(flat, nested)
    assert numeric_from_json(WHERE, "BOOL", (2,), [True, False]).tolist() == [True, False]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([1, 2, 3], r"shape \[2, 2\] has 4 elements but data has 3"),
        (["1", "2", "3", "4"], "must hold FP32 numbers"),
        ([[1, 2], [3]], "not a rectangular array"),
        ([1, None, 3, 4], "must hold FP32 numbers"),
    ],
)
def test_bad_json_data_is_refused(data: object, message: str) -> None:
    with pytest.raises(InvalidTensor, match=message):
        numeric_from_json(WHERE, "FP32", (2, 2), data)


def test_negative_dimensions_and_unknown_datatypes_are_refused() -> None:
    with pytest.raises(InvalidTensor, match="negative dimension"):
        numeric_from_json(WHERE, "FP32", (-1, 4), [1, 2, 3, 4])
    with pytest.raises(InvalidTensor, match=r"unknown datatype 'FLOAT32' \(known: BOOL, .*FP32.*BYTES\)"):
        check_datatype(WHERE, "FLOAT32")


def test_bytes_elements_match_tritonclient_both_ways() -> None:
    elements = [b"", b"\x00\xff jpeg", "é".encode() * 3]
    theirs = serialize_byte_tensor(np.array(elements, dtype=np.object_)).item()
    assert serialize_bytes(elements) == theirs
    assert bytes_from_binary(WHERE, (3,), memoryview(theirs)) == elements
    assert deserialize_bytes_tensor(serialize_bytes(elements)).tolist() == elements


@pytest.mark.parametrize(
    ("section", "shape", "message"),
    [
        (b"\x05\x00", (1,), "cut off inside its 4-byte length prefix"),
        (b"\x09\x00\x00\x00abc", (1,), "declares 9 bytes but only 3 remain"),
        (serialize_bytes([b"a", b"b"]), (3,), r"shape \[3\] has 3 elements but the data holds 2"),
    ],
)
def test_broken_bytes_sections_are_refused(section: bytes, shape: tuple[int, ...], message: str) -> None:
    with pytest.raises(InvalidTensor, match=message):
        bytes_from_binary(WHERE, shape, memoryview(section))


def test_json_bytes_are_strings() -> None:
    assert bytes_from_json(WHERE, (2, 1), [["a"], ["é"]]) == [b"a", "é".encode()]
    with pytest.raises(InvalidTensor, match="must hold strings, found int"):
        bytes_from_json(WHERE, (1,), [3])
