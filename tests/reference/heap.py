"""Naive model of IndexedHeap: a list kept sorted by (score, insertion seq)."""

from __future__ import annotations

import math


class NaiveHeap:
    """Every operation is O(n) list work; ties leave in insertion order."""

    def __init__(self, max_heap: bool = False) -> None:
        self.max_heap = max_heap
        self.items: list[tuple[float, int, int]] = []  # (score, seq, key), front first
        self.seq = 0

    def _sort(self) -> None:
        sign = -1.0 if self.max_heap else 1.0
        self.items.sort(key=lambda it: (sign * it[0], it[1]))

    def _find(self, key: int) -> int:
        for i, (_, _, k) in enumerate(self.items):
            if k == key:
                return i
        raise KeyError(key)

    def __contains__(self, key: int) -> bool:
        return any(k == key for _, _, k in self.items)

    def __len__(self) -> int:
        return len(self.items)

    def push(self, key: int, score: float) -> None:
        if key in self or math.isnan(score):
            raise ValueError
        self.items.append((score, self.seq, key))
        self.seq += 1
        self._sort()

    def pop(self) -> tuple[float, int]:
        score, _, key = self.items.pop(0)
        return score, key

    def peek(self) -> tuple[float, int] | None:
        if not self.items:
            return None
        score, _, key = self.items[0]
        return score, key

    def set_score(self, key: int, score: float) -> None:
        i = self._find(key)
        _, seq, _ = self.items[i]
        self.items[i] = (score, seq, key)
        self._sort()

    def delete(self, key: int) -> tuple[float, int]:
        score, _, _ = self.items.pop(self._find(key))
        return score, key

    def get_score(self, key: int) -> float | None:
        for score, _, k in self.items:
            if k == key:
                return score
        return None

    def order(self) -> list[tuple[float, int]]:
        return [(s, k) for s, _, k in self.items]
