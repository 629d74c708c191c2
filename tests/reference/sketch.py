"""Naive frequency model for CountMinSketch: a dict of exact counts."""

from __future__ import annotations

from typing import Any


def canonical(item: Any) -> Any:
    """The sketch's item identity: str as UTF-8 bytes, ints modulo 2**64."""
    if isinstance(item, str):
        return item.encode("utf-8")
    if isinstance(item, (bytes, bytearray, memoryview)):
        return bytes(item)
    return int(item) % (1 << 64)


class ExactCounter:
    """Exact counts; ``decay`` floor-halves every count like the sketch's aging."""

    def __init__(self) -> None:
        self.counts: dict[Any, int] = {}
        self.total = 0  # like the sketch's total: halved as a whole by decay

    def add(self, item: Any, count: int = 1) -> None:
        key = canonical(item)
        self.counts[key] = self.counts.get(key, 0) + count
        self.total += count

    def count(self, item: Any) -> int:
        return self.counts.get(canonical(item), 0)

    def decay(self) -> None:
        self.counts = {k: v >> 1 for k, v in self.counts.items()}
        self.total >>= 1

    def merge(self, other: ExactCounter) -> None:
        for k, v in other.counts.items():
            self.counts[k] = self.counts.get(k, 0) + v
        self.total += other.total


def cell_sum_upper_bound(true_counts: dict[Any, int]) -> int:
    """Total of all counts: no estimate can exceed it."""
    return sum(true_counts.values())
