"""Rewrite llmds container files and bundles with recomputed checksums (test helper).

A hostile file recomputes its CRCs and SHA-256 sums, so the loaders' structural checks
are what the HNSW / RetrievalPipeline file tests and the fuzz test exercise. The
container layout is the one documented in ``llmds._persist``; the header is written
with ``allow_nan=True`` so a test can put NaN or Infinity into it.
"""

from __future__ import annotations

import hashlib
import json
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from llmds._persist import MAGIC, MANIFEST

_ALIGN = 64


def read_raw(path: str | Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """``(header without "arrays", {name: array copy})`` of a container file."""
    data = Path(path).read_bytes()
    (hlen,) = struct.unpack("<I", data[12:16])
    doc = json.loads(data[16 : 16 + hlen])
    start = -(-(16 + hlen + 4) // _ALIGN) * _ALIGN
    arrays = {}
    for e in doc.pop("arrays"):
        off = start + e["offset"]
        raw = data[off : off + e["nbytes"]]
        arrays[e["name"]] = np.frombuffer(raw, dtype=e["dtype"]).reshape(e["shape"]).copy()
    return doc, arrays


def write_raw(path: str | Path, doc: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    """Write a container with valid CRCs around whatever ``doc`` and ``arrays`` hold."""
    entries, blobs, offset = [], [], 0
    for name, arr in arrays.items():
        a = np.ascontiguousarray(arr)
        raw = a.tobytes()
        entries.append({"name": name, "dtype": a.dtype.name, "shape": list(a.shape),
                        "offset": offset, "nbytes": len(raw), "crc32": zlib.crc32(raw)})
        blobs.append(raw)
        offset += -(-len(raw) // _ALIGN) * _ALIGN
    header = json.dumps({**doc, "arrays": entries}).encode("utf-8")
    prefix = MAGIC + struct.pack("<II", 2, len(header)) + header
    prefix += struct.pack("<I", zlib.crc32(header))
    start = -(-len(prefix) // _ALIGN) * _ALIGN
    buf = bytearray(start + offset)
    buf[: len(prefix)] = prefix
    for entry, raw in zip(entries, blobs, strict=True):
        buf[start + entry["offset"] : start + entry["offset"] + len(raw)] = raw
    Path(path).write_bytes(bytes(buf))


def part_path(folder: str | Path, part: str) -> Path:
    """The file of bundle part ``part`` named by the folder's manifest."""
    doc, _ = read_raw(Path(folder) / MANIFEST)
    return Path(folder) / doc["meta"]["parts"][part]["file"]


def refresh_manifest(folder: str | Path, change: Any = None) -> None:
    """Recompute every part's SHA-256 in the manifest (after ``change(meta)``, if given)."""
    root = Path(folder)
    doc, arrays = read_raw(root / MANIFEST)
    if change is not None:
        change(doc["meta"])
    parts = doc["meta"].get("parts") if isinstance(doc["meta"], dict) else None
    for entry in parts.values() if isinstance(parts, dict) else ():
        file = entry.get("file") if isinstance(entry, dict) else None
        if isinstance(file, str) and "/" not in file and (root / file).is_file():
            entry["sha256"] = hashlib.sha256((root / file).read_bytes()).hexdigest()
    write_raw(root / MANIFEST, doc, arrays)
