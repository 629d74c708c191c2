"""Naive models for the remote page tier (tests only): a dict store and the true KV."""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np


class DictPageStore:
    """The page store protocol over a dict ``digest -> page bytes`` (one process)."""

    def __init__(self, page_size: int, page_shape: tuple[int, ...] | None = None,
                 dtype: Any = np.float32) -> None:
        self.page_size = page_size
        self.page_shape = page_shape
        self.dtype = np.dtype(dtype)
        self.pages: dict[bytes, bytes] = {}

    def contains_prefix(self, page_hashes: Sequence[bytes]) -> int:
        n = 0
        while n < len(page_hashes) and page_hashes[n] in self.pages:
            n += 1
        return n

    def get_many(self, page_hashes: Sequence[bytes]) -> list[Any]:
        return [self.pages.get(h) for h in page_hashes]

    def put_many(self, page_hashes: Sequence[bytes], payloads: Sequence[Any]) -> int:
        for h, p in zip(page_hashes, payloads, strict=True):
            self.pages[h] = np.ascontiguousarray(p).tobytes()
        return len(page_hashes)


def true_kv(tokens: Sequence[int], extra: object, row_shape: tuple[int, ...],
            dtype: Any = np.float32) -> np.ndarray:
    """The KV an engine would compute: row ``i`` depends on ``extra`` and ``tokens[:i+1]``
    only (a rolling hash), as integers a float32 holds exactly."""
    width = int(np.prod(row_shape)) if row_shape else 1
    h = zlib.crc32(repr(extra).encode())
    out = np.empty((len(tokens), width), dtype=np.float64)
    for i, t in enumerate(tokens):
        h = (h * 1_000_003 + int(t) + 1) % (1 << 31)
        out[i] = [(h >> (j % 8)) % (1 << 20) + j for j in range(width)]
    return out.astype(dtype).reshape(len(tokens), *row_shape)
