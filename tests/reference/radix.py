"""Naive prefix cache: a dict of every cached page-prefix, for testing RadixCache.

The cache is modelled one page at a time: ``(extra_key, tuple(tokens[:end]))``,
for every page end ``end``, maps to the KV indices of that page, its last access
time and its lock count. The set is prefix-closed, so the longest cached prefix of
a key is found by growing it one page at a time. O(n**2) per operation:
obviously correct, not fast.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

Prefix = tuple[Hashable, tuple[int, ...]]


class NaivePrefixCache:
    """Mirrors RadixCache's documented contract at the granularity of one page."""

    def __init__(self, page_size: int = 1) -> None:
        self.page_size = page_size
        self.value: dict[Prefix, tuple[int, ...]] = {}
        self.stamp: dict[Prefix, int] = {}
        self.lock: dict[Prefix, int] = {}
        self.tick = 0

    def _aligned(self, tokens: Sequence[int]) -> tuple[int, ...]:
        n = len(tokens) - len(tokens) % self.page_size
        return tuple(int(t) for t in tokens[:n])

    def _ends(self, n: int) -> range:
        return range(self.page_size, n + 1, self.page_size)

    def match(self, tokens: Sequence[int], extra: Hashable = None) -> tuple[int, list[int]]:
        """Longest cached whole-page prefix; touches it. Returns (length, indices)."""
        toks = self._aligned(tokens)
        self.tick += 1
        length = 0
        ps = self.page_size
        while length + ps <= len(toks) and (extra, toks[: length + ps]) in self.value:
            length += ps
        indices: list[int] = []
        for end in self._ends(length):
            self.stamp[(extra, toks[:end])] = self.tick
            indices.extend(self.value[(extra, toks[:end])])
        return length, indices

    def insert(self, tokens: Sequence[int], values: Sequence[int], extra: Hashable = None) -> int:
        """Add every whole-page prefix; returns how many tokens were already cached."""
        toks = self._aligned(tokens)
        ps = self.page_size
        self.tick += 1
        present = 0
        for end in self._ends(len(toks)):
            p = (extra, toks[:end])
            if p in self.value:
                present += ps
            else:
                self.value[p] = tuple(int(v) for v in values[end - ps : end])
                self.lock[p] = 0
            self.stamp[p] = self.tick
        return present

    def lock_prefix(self, tokens: Sequence[int], length: int, extra: Hashable, by: int) -> None:
        """Add ``by`` (+1 or -1) to the lock count of every page up to ``length``."""
        toks = tuple(int(t) for t in tokens[:length])
        for end in self._ends(length):
            self.lock[(extra, toks[:end])] += by

    def remove(self, prefixes: set[Prefix]) -> None:
        for p in prefixes:
            del self.value[p], self.stamp[p], self.lock[p]

    def parent(self, p: Prefix) -> Prefix | None:
        extra, toks = p
        return None if len(toks) == self.page_size else (extra, toks[: -self.page_size])

    def is_leaf(self, p: Prefix) -> bool:
        return not any(self.parent(q) == p for q in self.value)

    def protected(self) -> int:
        return self.page_size * sum(1 for c in self.lock.values() if c > 0)

    def total(self) -> int:
        return self.page_size * len(self.value)

    def snapshot(self) -> dict[Prefix, Any]:
        return dict(self.value)
