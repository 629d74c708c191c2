"""Posting codecs of :class:`~llmds.inverted_index.InvertedIndex` (array in, array out).

The loops are numba kernels in ``_kernels/varint.py``:

* :func:`encode_varints` / :func:`decode_varints`: unsigned LEB128 varints over the
  whole uint64 range (7 bits per byte, ``2**64 - 1`` takes 10 bytes);
* :func:`zigzag_encode` / :func:`zigzag_decode`: signed <-> unsigned so that small
  magnitudes stay small (``0, -1, 1, -2 -> 0, 1, 2, 3``), for values that can be
  negative (differences of non-monotone sequences).

Segment posting format (see ``_kernels/bm25.py``): per term, a doc-ordered list of
postings, each ``varint((gap << 2) | (tf if tf <= 3 else 0))`` followed by
``varint(tf - 4)`` when ``tf >= 4``; gaps are differences of internal doc ids (never
negative, so no zigzag is needed there). On SciFact this is about 1.4 bytes per
posting (1.64 with the per-segment term directory).

The index file that holds these postings is described in :mod:`llmds._index_file`
(an :mod:`llmds._persist` container). Inputs are validated: integers only (floats
are never truncated, bools never counted as 0/1), 1-D, inside the codec's range.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from llmds._kernels import varint as _vk
from llmds._validate import check_int_array, show
from llmds.errors import CorruptFileError

__all__ = [
    "decode_varints",
    "encode_varints",
    "zigzag_decode",
    "zigzag_encode",
]

def _uint64_values(values: object, name: str) -> npt.NDArray[np.uint64]:
    """A 1-D array of integers in [0, 2**64 - 1] as uint64 (never wrapped)."""
    if isinstance(values, np.ndarray) and values.dtype == np.uint64 and values.ndim == 1:
        return values
    return check_int_array(values, name, minimum=0, dtype=np.uint64)


def encode_varints(values: npt.ArrayLike) -> npt.NDArray[np.uint8]:
    """Varint-encode non-negative integers (< 2**64). O(n).

    Negative values raise ``ValueError`` (zigzag-encode signed values first).

    >>> encode_varints([0, 1, 127, 128, 300]).tolist()
    [0, 1, 127, 128, 1, 172, 2]
    """
    try:
        u = _uint64_values(values, "values")
    except ValueError as exc:
        if "must hold values >=" in str(exc):
            raise ValueError(f"{exc} (zigzag_encode signed values first)") from None
        raise
    out = np.empty(10 * u.size, dtype=np.uint8)
    n = _vk.encode_uvarints(u, out)
    return out[:n].copy()


def decode_varints(data: npt.ArrayLike) -> npt.NDArray[np.uint64]:
    """Decode a byte string of varints into uint64. O(n).

    ``data`` is bytes, a bytearray or memoryview, a uint8 array, or a sequence of
    ints in [0, 255]. Raises CorruptFileError if the bytes end inside a value or a
    value overflows 64 bits.
    """
    if isinstance(data, bytes | bytearray | memoryview):
        buf = np.frombuffer(data, dtype=np.uint8)
    elif isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 1:
        buf = np.ascontiguousarray(data)
    else:
        if isinstance(data, str):
            raise TypeError(f"data must be bytes or a sequence of ints in [0, 255], "
                            f"got {show(data)}")
        buf = check_int_array(data, "data", minimum=0, maximum=255, dtype=np.uint8)
    out = np.empty(buf.size, dtype=np.uint64)
    n = _vk.decode_uvarints(buf, buf.size, out)
    if n < 0:
        raise CorruptFileError("data holds a truncated or overlong varint")
    return out[:n].copy()


def zigzag_encode(values: npt.ArrayLike) -> npt.NDArray[np.uint64]:
    """Map int64 to uint64 with zigzag (``0, -1, 1, -2, 2 -> 0, 1, 2, 3, 4``). O(n).

    >>> zigzag_encode([0, -1, 1, -2, 2]).tolist()
    [0, 1, 2, 3, 4]
    """
    arr = check_int_array(values, "values", dtype=np.int64)
    out = np.empty(arr.size, dtype=np.uint64)
    _vk.zigzag_encode(np.ascontiguousarray(arr), out)
    return out


def zigzag_decode(values: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """Inverse of :func:`zigzag_encode` (uint64 in, int64 out). O(n)."""
    arr = _uint64_values(values, "values")
    out = np.empty(arr.size, dtype=np.int64)
    _vk.zigzag_decode(np.ascontiguousarray(arr), out)
    return out
