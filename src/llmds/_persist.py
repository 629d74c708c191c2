"""The one on-disk format of llmds: a checksummed container file, and bundles of them.

Every persisted structure (InvertedIndex, HNSW, RetrievalPipeline, ...) is written as
a **container file** (:func:`write_container`), little endian::

    magic    8 bytes  b"LLMDSIX\\x00"
    version  uint32   FORMAT_VERSION (the container's own layout)
    hlen     uint32   length of the JSON header
    header   hlen bytes of UTF-8 JSON: {"kind": "llmds.HNSW", "version": 1, "meta": {...},
             "arrays": [{"name", "dtype", "shape", "offset", "nbytes", "crc32"}, ...]}
    hcrc     uint32   CRC-32 of the header bytes (so settings cannot change silently)
    arrays   raw C-order array bytes, each at a 64-byte aligned offset after the header

A structure made of several files (a pipeline: a BM25 index, an HNSW graph, vectors)
is a **bundle** (:func:`write_bundle`): a folder of container files named
``<part>-<token>.llmds`` plus a ``MANIFEST`` container naming them with their
SHA-256. The manifest is written last, by rename, so it is the commit point: a
reader sees the old bundle or the new one, never a mix, and files of older saves
are removed only after the commit.

**Nothing in a file is trusted.** Reading checks, before any array is used:
the path is a regular file (a FIFO or device is refused, so a load cannot block),
magic, version, the header's CRC and size (at most the file's size and 64 MiB),
JSON depth (a deeply nested header is a clean error, not a RecursionError), the
kind, dtypes from an allow-list (no pickle, no object arrays), shapes whose byte
count is the entry's ``nbytes`` and lies inside the file, and every array's CRC-32.
These catch accidents; a hostile file can recompute its checksums, so every loader
then validates the structural facts its kernels rely on (bounds, monotone offsets,
counts, finiteness) and raises :class:`~llmds.errors.CorruptFileError` naming
what is wrong.

**Writes are atomic**: a temporary file in the same folder, ``fsync``, ``rename``
over the target, ``fsync`` of the folder. Saving over a file that is open with
``mmap=True`` is therefore safe: the mapping keeps the old inode.

Memory mapping (``mmap=True``) maps the file descriptor that was validated
(copy-on-write: writes stay private to the process), not the path again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import mmap as _mmap
import os
import secrets
import stat
import struct
import zlib
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

from llmds.errors import CorruptFileError

__all__ = [
    "FORMAT_VERSION",
    "MAGIC",
    "Container",
    "atomic_file",
    "open_regular",
    "read_bundle",
    "read_container",
    "write_bundle",
    "write_container",
]

MAGIC = b"LLMDSIX\x00"
FORMAT_VERSION = 2
_READ_VERSIONS = (1, 2)  # version 1: InvertedIndex files of llmds 0.2 (kind in meta)
_ALIGN = 64
_MAX_HEADER = 64 * 2**20
_MAX_JSON_DEPTH = 32
_DTYPES = frozenset({"uint8", "uint16", "uint32", "uint64", "int8", "int16", "int32",
                     "int64", "float16", "float32", "float64"})
MANIFEST = "MANIFEST"


class Container:
    """What :func:`read_container` returns: ``kind``, ``version``, ``meta`` and ``arrays``."""

    __slots__ = ("arrays", "kind", "meta", "path", "version")

    def __init__(self, path: str, kind: str, version: int, meta: dict[str, Any],
                 arrays: dict[str, np.ndarray]) -> None:
        self.path = path
        self.kind = kind
        self.version = version
        self.meta = meta
        self.arrays = arrays

    def array(self, name: str, dtype: str, ndim: int) -> np.ndarray:
        """The array ``name``, which must exist with this dtype and number of dimensions."""
        arr = self.arrays.get(name)
        if arr is None:
            raise CorruptFileError(f"{self.path!r}: array {name!r} is missing")
        if arr.dtype != np.dtype(dtype) or arr.ndim != ndim:
            raise CorruptFileError(
                f"{self.path!r}: array {name!r} is {arr.dtype} with {arr.ndim} dimension(s), "
                f"expected {dtype} with {ndim}")
        return arr

    def fail(self, what: str) -> CorruptFileError:
        """A CorruptFileError naming this file and ``what`` is wrong (to ``raise``)."""
        return CorruptFileError(f"{self.path!r}: {what}")


# ----------------------------------------------------------------------------- writing
def _raw(a: np.ndarray) -> memoryview:
    """The bytes of a C-contiguous array as a flat memoryview (no copy)."""
    return memoryview(a.reshape(-1).view(np.uint8))  # type: ignore[arg-type]


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every file system lets a folder be fsynced
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike[str]) -> Iterator[IO[bytes]]:
    """Open a temporary file beside ``path``; on success fsync it and rename it over ``path``.

    On an exception the temporary file is removed and ``path`` is untouched.
    """
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    if target.is_dir():
        raise IsADirectoryError(f"cannot save to {os.fspath(path)!r}: it is a folder")
    tmp = folder / f".{target.name}.{secrets.token_hex(6)}.tmp"
    f = open(tmp, "xb")  # noqa: SIM115 - closed below on every path
    try:
        yield f
        f.flush()
        os.fsync(f.fileno())
        f.close()
        os.replace(tmp, target)
    except BaseException:
        f.close()
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(folder)


def write_container(
    path: str | os.PathLike[str], kind: str, version: int, meta: dict[str, Any],
    arrays: dict[str, np.ndarray],
) -> int:
    """Write ``meta`` (JSON-able) and ``arrays`` to ``path`` atomically; return the file size.

    O(total array bytes). ``kind`` names the structure (``"llmds.HNSW"``) and
    ``version`` its own layout version, checked again by :func:`read_container`.
    """
    entries = []
    offset = 0
    contiguous = []
    for name, arr in arrays.items():
        a = np.ascontiguousarray(arr)
        if a.dtype.name not in _DTYPES:
            raise TypeError(f"array {name!r} has unsupported dtype {a.dtype}")
        contiguous.append(a)
        entries.append({
            "name": name, "dtype": a.dtype.name, "shape": list(a.shape), "offset": offset,
            "nbytes": int(a.nbytes), "crc32": zlib.crc32(_raw(a)) & 0xFFFFFFFF,
        })
        offset += -(-a.nbytes // _ALIGN) * _ALIGN
    header = json.dumps({"kind": kind, "version": version, "meta": meta, "arrays": entries},
                        sort_keys=True, allow_nan=False).encode("utf-8")
    prefix = MAGIC + struct.pack("<II", FORMAT_VERSION, len(header)) + header
    prefix += struct.pack("<I", zlib.crc32(header) & 0xFFFFFFFF)
    data_start = -(-len(prefix) // _ALIGN) * _ALIGN
    total = data_start + offset
    with atomic_file(path) as f:
        f.write(prefix)
        f.write(b"\0" * (data_start - len(prefix)))
        for entry, a in zip(entries, contiguous, strict=True):
            f.seek(data_start + entry["offset"])
            f.write(_raw(a))
        f.truncate(total)
    return total


# ----------------------------------------------------------------------------- reading
def open_regular(path: str | os.PathLike[str]) -> tuple[int, int]:
    """Open ``path`` read-only if it is a regular file: ``(fd, size)``. O(1).

    A FIFO, socket, device or folder raises :class:`CorruptFileError` (``ValueError``)
    without blocking: the file is opened non-blocking and checked again through the
    descriptor, so nothing swapped in between is read. A missing path raises
    ``FileNotFoundError``.
    """
    where = os.fspath(path)
    st = os.stat(where)  # FileNotFoundError for a missing path, as open() would
    if not stat.S_ISREG(st.st_mode):
        kind = "a folder" if stat.S_ISDIR(st.st_mode) else "not a regular file"
        raise CorruptFileError(f"{where!r} is {kind}; llmds loads only regular files")
    fd = os.open(where, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise CorruptFileError(f"{where!r} is not a regular file; llmds loads only those")
    except BaseException:
        os.close(fd)
        raise
    return fd, int(st.st_size)


def _read_exact(fd: int, offset: int, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        chunk = os.pread(fd, min(n - len(out), 1 << 24), offset + len(out))
        if not chunk:
            break
        out += chunk
    return bytes(out)


def _depth(obj: Any, limit: int) -> int:
    """Nesting depth of parsed JSON, stopping once it passes ``limit``."""
    stack = [(obj, 1)]
    deepest = 0
    while stack:
        node, d = stack.pop()
        deepest = max(deepest, d)
        if deepest > limit:
            return deepest
        if isinstance(node, dict):
            stack.extend((v, d + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, d + 1) for v in node)
    return deepest


def _entry(e: Any, where: str, size: int, data_start: int) -> tuple[str, np.dtype, tuple[int, ...],
                                                                     int, int, int]:
    if not isinstance(e, dict):
        raise CorruptFileError(f"{where!r}: array entry is not an object")
    name, dtype_name, shape = e.get("name"), e.get("dtype"), e.get("shape")
    offset, nbytes, crc = e.get("offset"), e.get("nbytes"), e.get("crc32")
    if not isinstance(name, str) or not isinstance(dtype_name, str) or dtype_name not in _DTYPES:
        raise CorruptFileError(f"{where!r}: array entry {name!r} has a bad name or dtype")
    if not isinstance(shape, list) or len(shape) > 8 or not all(
            type(s) is int and s >= 0 for s in shape):
        raise CorruptFileError(f"{where!r}: array {name!r} has a bad shape {shape!r}")
    if not all(type(v) is int and v >= 0 for v in (offset, nbytes, crc)):
        raise CorruptFileError(f"{where!r}: array {name!r} has a bad offset, size or checksum")
    dtype = np.dtype(dtype_name)
    count = 1
    for s in shape:
        count *= s  # Python ints: no overflow, so a huge shape cannot alias a small size
    assert isinstance(nbytes, int) and isinstance(offset, int) and isinstance(crc, int)
    if count * dtype.itemsize != nbytes:
        raise CorruptFileError(f"{where!r}: array {name!r} shape {shape} does not match "
                               f"its size {nbytes}")
    if offset % _ALIGN or data_start + offset + nbytes > size:
        raise CorruptFileError(f"{where!r} is truncated or array {name!r} lies outside it")
    return name, dtype, tuple(shape), offset, nbytes, crc


def read_container(
    path: str | os.PathLike[str], kind: str, versions: Collection[int], *,
    mmap: bool = False, verify: bool = True,
) -> Container:
    """Read a container file of ``kind`` whose layout version is in ``versions``. O(file size).

    ``mmap=True`` maps arrays copy-on-write instead of reading them; ``verify``
    checks every array's CRC-32 (which reads every page). Raises CorruptFileError
    for anything that is not an intact container of that kind and version, and
    FileNotFoundError for a missing path. The caller still validates the arrays'
    contents (see the module docstring).
    """
    where = os.fspath(path)
    fd, size = open_regular(path)
    try:
        fixed = _read_exact(fd, 0, 16)
        if len(fixed) < 16 or fixed[:8] != MAGIC:
            raise CorruptFileError(f"{where!r} is not an llmds file (bad magic)")
        fmt, hlen = struct.unpack("<II", fixed[8:16])
        if fmt not in _READ_VERSIONS:
            raise CorruptFileError(f"{where!r} has format version {fmt}; this llmds reads "
                                   f"versions {', '.join(map(str, _READ_VERSIONS))}")
        if hlen > _MAX_HEADER or 16 + hlen + 4 > size:
            raise CorruptFileError(f"{where!r} is truncated or its header size {hlen} is "
                                   f"impossible for a {size}-byte file")
        header = _read_exact(fd, 16, hlen + 4)
        (hcrc,) = struct.unpack("<I", header[hlen:])
        header = header[:hlen]
        if zlib.crc32(header) & 0xFFFFFFFF != hcrc:
            raise CorruptFileError(f"{where!r}: header checksum mismatch")
        try:
            doc = json.loads(header.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise CorruptFileError(f"{where!r}: malformed header ({type(exc).__name__})") from None
        if not isinstance(doc, dict) or _depth(doc, _MAX_JSON_DEPTH) > _MAX_JSON_DEPTH:
            raise CorruptFileError(f"{where!r}: malformed header (not an object, or too deep)")
        meta, entries = doc.get("meta"), doc.get("arrays")
        if not isinstance(meta, dict) or not isinstance(entries, list):
            raise CorruptFileError(f"{where!r}: malformed header (meta or arrays missing)")
        file_kind = meta.get("kind") if fmt == 1 else doc.get("kind")
        file_version: Any = 1 if fmt == 1 else doc.get("version")
        if file_kind != kind:
            raise CorruptFileError(f"{where!r} holds {file_kind!r}, not {kind!r}")
        if type(file_version) is not int or file_version not in versions:
            raise CorruptFileError(f"{where!r}: {kind} version {file_version!r} is not one this "
                                   f"llmds reads ({', '.join(map(str, sorted(versions)))})")
        data_start = -(-(16 + hlen + 4) // _ALIGN) * _ALIGN
        parsed = [_entry(e, where, size, data_start) for e in entries]
        if len({p[0] for p in parsed}) != len(parsed):
            raise CorruptFileError(f"{where!r}: duplicate array names")
        arrays: dict[str, np.ndarray] = {}
        mapping = None
        if mmap and any(p[4] for p in parsed):
            mapping = _mmap.mmap(fd, 0, access=_mmap.ACCESS_COPY)
        for name, dtype, shape, offset, nbytes, crc in parsed:
            start = data_start + offset
            if nbytes == 0:
                arr = np.zeros(shape, dtype=dtype)
            elif mapping is not None:
                arr = np.frombuffer(mapping, dtype=dtype, count=nbytes // dtype.itemsize,
                                    offset=start).reshape(shape)
            else:
                buf = bytearray(_read_exact(fd, start, nbytes))
                if len(buf) != nbytes:
                    raise CorruptFileError(f"{where!r} is truncated (array {name!r})")
                arr = np.frombuffer(buf, dtype=dtype).reshape(shape)
            if verify and zlib.crc32(_raw(arr)) & 0xFFFFFFFF != crc:
                raise CorruptFileError(f"{where!r}: checksum mismatch in array {name!r}")
            arrays[name] = arr
    finally:
        os.close(fd)
    return Container(where, kind, file_version, meta, arrays)


# ----------------------------------------------------------------------------- bundles
def _sha256_file(path: Path) -> str:
    fd, _size = open_regular(path)
    h = hashlib.sha256()
    try:
        offset = 0
        while chunk := os.pread(fd, 1 << 22, offset):
            h.update(chunk)
            offset += len(chunk)
    finally:
        os.close(fd)
    return h.hexdigest()


def write_bundle(
    folder: str | os.PathLike[str], kind: str, version: int, meta: dict[str, Any],
    parts: dict[str, Callable[[Path], object]],
) -> None:
    """Write a bundle: each ``parts[name](path)`` writes one container file, then the manifest.

    O(size of the parts). The folder is created if needed; an existing file at
    ``folder`` raises. Files of earlier saves are deleted after the new manifest is
    in place, so readers never see a mix (see the module docstring).
    """
    root = Path(folder)
    if root.exists() and not root.is_dir():
        raise NotADirectoryError(f"cannot save to {os.fspath(folder)!r}: it is a file")
    root.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(6)
    names: dict[str, Any] = {}
    written: list[Path] = []
    try:
        for part, writer in parts.items():
            file = f"{part}-{token}.llmds"
            writer(root / file)
            written.append(root / file)
            names[part] = {"file": file, "sha256": _sha256_file(root / file)}
        write_container(root / MANIFEST, kind, version, {**meta, "parts": names}, {})
    except BaseException:
        for done in written:
            with contextlib.suppress(OSError):
                done.unlink()
        raise
    keep = {entry["file"] for entry in names.values()} | {MANIFEST}
    for stale in root.iterdir():
        if stale.name not in keep and stale.name.endswith(".llmds") and stale.is_file():
            with contextlib.suppress(OSError):
                stale.unlink()


def read_bundle(
    folder: str | os.PathLike[str], kind: str, versions: Collection[int],
    part_names: Collection[str],
) -> tuple[Container, dict[str, Path]]:
    """Read a bundle's manifest and check its parts: ``(manifest, {part: path})``.

    O(size of the parts) (each part's SHA-256 is checked against the manifest). The
    caller loads each part with that structure's own loader, which validates it.
    Raises FileNotFoundError when ``folder`` has no manifest and CorruptFileError when
    the manifest or a part is missing, altered or of another kind.
    """
    root = Path(folder)
    if not root.is_dir():
        if root.exists():
            raise CorruptFileError(f"{os.fspath(folder)!r} is not a folder")
        raise FileNotFoundError(f"no saved {kind} at {os.fspath(folder)!r}")
    if not (root / MANIFEST).exists():
        raise FileNotFoundError(f"no saved {kind} at {os.fspath(folder)!r} ({MANIFEST} missing)")
    manifest = read_container(root / MANIFEST, kind, versions)
    parts = manifest.meta.get("parts")
    if not isinstance(parts, dict) or set(parts) != set(part_names):
        raise manifest.fail(f"the manifest must name the parts {sorted(part_names)}")
    paths = {}
    for part, entry in parts.items():
        file = entry.get("file") if isinstance(entry, dict) else None
        digest = entry.get("sha256") if isinstance(entry, dict) else None
        if not isinstance(file, str) or not isinstance(digest, str) or "/" in file or \
                "\\" in file or file.startswith(".") or not file.endswith(".llmds"):
            raise manifest.fail(f"part {part!r} has a bad file entry")
        path = root / file
        if not path.exists():
            raise manifest.fail(f"part {part!r} ({file}) is missing")
        if _sha256_file(path) != digest:
            raise manifest.fail(f"part {part!r} ({file}) does not match its checksum")
        paths[part] = path
    return manifest, paths
