import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from llmds.errors import CorruptFileError
from llmds.postings import decode_varints, encode_varints, zigzag_decode, zigzag_encode

U64 = st.integers(0, 2**64 - 1)
I64 = st.integers(-(2**63), 2**63 - 1)


@given(st.lists(U64, max_size=50))
def test_varint_round_trip(values):
    arr = np.array(values, dtype=np.uint64)
    assert decode_varints(encode_varints(arr)).tolist() == values


@given(st.lists(I64, max_size=50))
def test_zigzag_round_trip(values):
    z = zigzag_encode(values)
    assert zigzag_decode(z).tolist() == values
    assert decode_varints(encode_varints(z)).tolist() == z.tolist()


@pytest.mark.parametrize(
    ("value", "nbytes"),
    [(0, 1), (1, 1), (127, 1), (128, 2), (16383, 2), (16384, 3), (2**63 - 1, 9), (2**64 - 1, 10)],
)
def test_varint_sizes_at_the_edges(value, nbytes):
    enc = encode_varints(np.array([value], dtype=np.uint64))
    assert enc.size == nbytes
    assert decode_varints(enc).tolist() == [value]


def test_zigzag_small_magnitudes_stay_small():
    assert zigzag_encode([0, -1, 1, -2, 2, 2**63 - 1, -(2**63)]).tolist() == [
        0, 1, 2, 3, 4, 2**64 - 2, 2**64 - 1]


def test_encode_rejects_negative_and_floats():
    with pytest.raises(ValueError, match="zigzag"):
        encode_varints(np.array([1, -1]))
    with pytest.raises(TypeError, match="integers"):
        encode_varints(np.array([1.5]))
    with pytest.raises(ValueError, match="1-D"):
        encode_varints(np.zeros((2, 2), dtype=np.int64))


@pytest.mark.parametrize("data", [bytes([0x80]), bytes([0xFF] * 11), bytes([1, 0x81])])
def test_decode_truncated_or_overlong_raises(data):
    with pytest.raises(CorruptFileError):
        decode_varints(data)
