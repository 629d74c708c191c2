"""Naive token-budget LRU: a Python list of (key, value, size), least recent first."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class ListLRU:
    """Obviously correct, O(n) per operation. Mirrors TokenLRU's documented contract."""

    def __init__(self, token_budget: int, token_of: Callable[[Any], int]) -> None:
        self.budget = token_budget
        self.token_of = token_of
        self.entries: list[tuple[Any, Any, int]] = []

    def _find(self, key: Any) -> int:
        for i, (k, _, _) in enumerate(self.entries):
            if k == key:
                return i
        return -1

    def total_tokens(self) -> int:
        return sum(size for _, _, size in self.entries)

    def get(self, key: Any) -> Any:
        i = self._find(key)
        if i < 0:
            return None
        entry = self.entries.pop(i)
        self.entries.append(entry)
        return entry[1]

    def peek(self, key: Any) -> Any:
        i = self._find(key)
        return None if i < 0 else self.entries[i][1]

    def put(self, key: Any, value: Any) -> list[tuple[Any, Any]]:
        size = self.token_of(value)
        if size > self.budget:
            raise ValueError("too large")
        i = self._find(key)
        if i >= 0:
            self.entries.pop(i)
        self.entries.append((key, value, size))
        evicted = []
        while self.total_tokens() > self.budget:
            k, v, _ = self.entries.pop(0)
            evicted.append((k, v))
        return evicted

    def pop(self, key: Any, default: Any = None) -> Any:
        i = self._find(key)
        if i < 0:
            return default
        return self.entries.pop(i)[1]

    def evict_until_budget(self, target: int) -> list[tuple[Any, Any]]:
        evicted = []
        while self.total_tokens() > target:
            k, v, _ = self.entries.pop(0)
            evicted.append((k, v))
        return evicted

    def items(self) -> list[tuple[Any, Any]]:
        return [(k, v) for k, v, _ in self.entries]
