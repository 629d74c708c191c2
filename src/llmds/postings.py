"""Posting codecs and the on-disk container of :class:`~llmds.inverted_index.InvertedIndex`.

Codecs (array in, array out; the loops are numba kernels in ``_kernels/varint.py``):

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

Container format (:func:`write_container` / :func:`read_container`), little endian::

    magic   8 bytes  b"LLMDSIX\\x00"
    version uint32   FORMAT_VERSION
    hlen    uint32   length of the JSON header
    header  hlen bytes of UTF-8 JSON: {"meta": {...}, "arrays": [{"name", "dtype",
            "shape", "offset", "nbytes", "crc32"}, ...]}
    hcrc    uint32   CRC-32 of the header bytes
    arrays  raw C-order array bytes, each at a 64-byte aligned ``offset``

No pickle anywhere: arrays have fixed dtypes from an allow-list, so a file can be
memory-mapped (``np.memmap``, copy-on-write) instead of read. Any inconsistency
(bad magic, unknown version, truncated file, CRC mismatch, malformed header)
raises :class:`llmds.errors.CorruptFileError`.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from typing import Any

import numpy as np
import numpy.typing as npt

from llmds._kernels import varint as _vk
from llmds.errors import CorruptFileError

__all__ = [
    "FORMAT_VERSION",
    "MAGIC",
    "decode_varints",
    "encode_varints",
    "read_container",
    "write_container",
    "zigzag_decode",
    "zigzag_encode",
]

MAGIC = b"LLMDSIX\x00"
FORMAT_VERSION = 1
_ALIGN = 64
_DTYPES = frozenset({"uint8", "uint32", "int32", "int64", "float32", "float64"})


def encode_varints(values: npt.ArrayLike) -> npt.NDArray[np.uint8]:
    """Varint-encode non-negative integers (< 2**64). O(n).

    >>> encode_varints([0, 1, 127, 128, 300]).tolist()
    [0, 1, 127, 128, 1, 172, 2]
    """
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"values must be 1-D, got shape {arr.shape}")
    if arr.size and arr.dtype.kind not in "iu":
        raise TypeError(f"values must be integers, got dtype {arr.dtype}")
    if arr.dtype.kind == "i" and arr.size and int(arr.min()) < 0:
        raise ValueError("values must be >= 0 (zigzag_encode signed values first)")
    u = arr.astype(np.uint64)
    out = np.empty(10 * u.size, dtype=np.uint8)
    n = _vk.encode_uvarints(u, out)
    return out[:n].copy()


def decode_varints(data: npt.ArrayLike) -> npt.NDArray[np.uint64]:
    """Decode a byte string of varints into uint64. O(n).

    Raises CorruptFileError if the bytes end inside a value or a value overflows 64 bits.
    """
    buf = np.frombuffer(data, dtype=np.uint8) if isinstance(data, bytes | bytearray) else (
        np.ascontiguousarray(data, dtype=np.uint8))
    out = np.empty(buf.size, dtype=np.uint64)
    n = _vk.decode_uvarints(buf, buf.size, out)
    if n < 0:
        raise CorruptFileError("truncated or overlong varint")
    return out[:n].copy()


def zigzag_encode(values: npt.ArrayLike) -> npt.NDArray[np.uint64]:
    """Map int64 to uint64 with zigzag (``0, -1, 1, -2, 2 -> 0, 1, 2, 3, 4``). O(n).

    >>> zigzag_encode([0, -1, 1, -2, 2]).tolist()
    [0, 1, 2, 3, 4]
    """
    arr = np.ascontiguousarray(values, dtype=np.int64)
    out = np.empty(arr.size, dtype=np.uint64)
    _vk.zigzag_encode(arr.reshape(-1), out)
    return out


def zigzag_decode(values: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """Inverse of :func:`zigzag_encode`. O(n)."""
    arr = np.ascontiguousarray(values, dtype=np.uint64)
    out = np.empty(arr.size, dtype=np.int64)
    _vk.zigzag_decode(arr.reshape(-1), out)
    return out


def _raw(a: np.ndarray) -> memoryview:
    """The bytes of a C-contiguous array as a flat memoryview (no copy)."""
    return memoryview(a.reshape(-1).view(np.uint8))  # type: ignore[arg-type]


def write_container(
    path: str | os.PathLike[str], meta: dict[str, Any], arrays: dict[str, np.ndarray]
) -> int:
    """Write ``meta`` (JSON-able) and ``arrays`` to ``path`` atomically; return bytes written.

    The file is written to ``path + ".tmp"`` and renamed, so a crash never leaves a
    half-written index under the final name.
    """
    entries = []
    offset = 0
    for name, arr in arrays.items():
        a = np.ascontiguousarray(arr)
        if a.dtype.name not in _DTYPES:
            raise TypeError(f"array {name!r} has unsupported dtype {a.dtype}")
        entries.append({
            "name": name, "dtype": a.dtype.name, "shape": list(a.shape), "offset": offset,
            "nbytes": int(a.nbytes), "crc32": zlib.crc32(_raw(a)) & 0xFFFFFFFF,
        })
        offset += -(-a.nbytes // _ALIGN) * _ALIGN
    header = json.dumps({"meta": meta, "arrays": entries}, sort_keys=True).encode("utf-8")
    prefix = MAGIC + struct.pack("<II", FORMAT_VERSION, len(header)) + header
    prefix += struct.pack("<I", zlib.crc32(header) & 0xFFFFFFFF)
    data_start = -(-len(prefix) // _ALIGN) * _ALIGN
    tmp = os.fspath(path) + ".tmp"
    with open(tmp, "wb") as f:
        f.write(prefix)
        f.write(b"\0" * (data_start - len(prefix)))
        for entry, arr in zip(entries, arrays.values(), strict=True):
            f.seek(data_start + entry["offset"])
            f.write(_raw(np.ascontiguousarray(arr)))
        total = data_start + offset
        f.truncate(total)
    os.replace(tmp, path)
    return total


def read_container(
    path: str | os.PathLike[str], *, mmap: bool = False, verify: bool = True
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read a file written by :func:`write_container`: ``(meta, arrays)``.

    ``mmap=True`` maps arrays copy-on-write instead of reading them (writes stay
    private to the process). ``verify`` checks every array's CRC-32 (reads all pages).
    Raises CorruptFileError for anything that is not an intact file of a known version.
    """
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        fixed = f.read(16)
        if len(fixed) < 16 or fixed[:8] != MAGIC:
            raise CorruptFileError(f"{os.fspath(path)!r} is not an llmds index file (bad magic)")
        version, hlen = struct.unpack("<II", fixed[8:16])
        if version != FORMAT_VERSION:
            raise CorruptFileError(
                f"{os.fspath(path)!r} has format version {version}; this llmds reads "
                f"version {FORMAT_VERSION}")
        if 16 + hlen + 4 > size:
            raise CorruptFileError(f"{os.fspath(path)!r} is truncated (header)")
        header = f.read(hlen)
        (hcrc,) = struct.unpack("<I", f.read(4))
    if zlib.crc32(header) & 0xFFFFFFFF != hcrc:
        raise CorruptFileError(f"{os.fspath(path)!r}: header checksum mismatch")
    try:
        doc = json.loads(header.decode("utf-8"))
        meta = doc["meta"]
        entries = doc["arrays"]
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise CorruptFileError(f"{os.fspath(path)!r}: malformed header ({exc})") from None
    data_start = -(-(16 + hlen + 4) // _ALIGN) * _ALIGN
    arrays: dict[str, np.ndarray] = {}
    raw = None if mmap else open(path, "rb")  # noqa: SIM115 - closed in finally
    try:
        for e in entries:
            try:
                name, dtype, shape = str(e["name"]), np.dtype(e["dtype"]), tuple(e["shape"])
                offset, nbytes, crc = int(e["offset"]), int(e["nbytes"]), int(e["crc32"])
            except (KeyError, TypeError, ValueError) as exc:
                raise CorruptFileError(f"{os.fspath(path)!r}: bad array entry ({exc})") from None
            if dtype.name not in _DTYPES or int(np.prod(shape)) * dtype.itemsize != nbytes:
                raise CorruptFileError(f"{os.fspath(path)!r}: bad array entry {name!r}")
            start = data_start + offset
            if start + nbytes > size:
                raise CorruptFileError(f"{os.fspath(path)!r} is truncated (array {name!r})")
            if nbytes == 0:
                arr = np.zeros(shape, dtype=dtype)
            elif mmap:
                arr = np.memmap(path, dtype=dtype, mode="c", offset=start, shape=shape)
            else:
                assert raw is not None
                raw.seek(start)
                buf = raw.read(nbytes)
                arr = np.frombuffer(bytearray(buf), dtype=dtype).reshape(shape)
            if verify and zlib.crc32(_raw(np.ascontiguousarray(arr))) != crc:
                raise CorruptFileError(f"{os.fspath(path)!r}: checksum mismatch in {name!r}")
            arrays[name] = arr
    finally:
        if raw is not None:
            raw.close()
    return meta, arrays
