"""Naive models of the KV-cache memory structures (tests only)."""

from __future__ import annotations


class NaiveAllocator:
    """A dict ``page -> refcount`` of the pages handed out; free = the rest."""

    def __init__(self, num_pages: int) -> None:
        self.num_pages = num_pages
        self.held: dict[int, int] = {}

    @property
    def num_free(self) -> int:
        return self.num_pages - len(self.held)

    def free_ids(self) -> list[int]:
        return [p for p in range(self.num_pages) if p not in self.held]

    def release(self, ids: list[int]) -> bool:
        """Apply one release per id; False (and no change) if any is invalid."""
        counts: dict[int, int] = {}
        for p in ids:
            if not 0 <= p < self.num_pages:
                return False
            counts[p] = counts.get(p, 0) + 1
        if any(self.held.get(p, 0) < c for p, c in counts.items()):
            return False
        for p, c in counts.items():
            self.held[p] -= c
            if self.held[p] == 0:
                del self.held[p]
        return True

    def largest_free_run(self) -> int:
        best = run = 0
        for p in range(self.num_pages):
            run = run + 1 if p not in self.held else 0
            best = max(best, run)
        return best


class NaiveKV:
    """A dict ``seq_id -> list of values`` plus, for token-level sequences,
    ``seq_id -> list of token ids`` and the set of page-aligned cached prefixes.
    """

    def __init__(self, page_size: int) -> None:
        self.page_size = page_size
        self.values: dict[int, list[float]] = {}
        self.tokens: dict[int, list[int]] = {}

    def attach(self, seq_id: int, values: list[float]) -> None:
        self.values[seq_id] = list(values)

    def append(self, seq_id: int, values: list[float]) -> None:
        self.values[seq_id].extend(values)
        if values:  # appending values (not ids) loses track of the token ids
            self.tokens.pop(seq_id, None)

    def fork(self, parent: int, child: int) -> None:
        self.values[child] = list(self.values[parent])
        if parent in self.tokens:
            self.tokens[child] = list(self.tokens[parent])

    def detach(self, seq_id: int) -> None:
        del self.values[seq_id]
        self.tokens.pop(seq_id, None)

    def pages_needed(self, seq_id: int) -> int:
        return -(-len(self.values[seq_id]) // self.page_size)


def ideal_prefix_hits(requests: list[tuple[list[int], list[int]]], page_size: int) -> float:
    """Hit rate of an unbounded page-aligned prefix cache, by brute force.

    Each request is ``(prompt, output)``; before request ``i`` the cache holds
    every full page of every earlier ``prompt + output``. The hit of a prompt is
    its longest page-aligned prefix that some earlier sequence also starts
    with. Returns matched prompt tokens / prompt tokens.
    """
    seen: set[tuple[int, ...]] = set()
    hit = total = 0
    for prompt, output in requests:
        total += len(prompt)
        k = 0
        while (k + 1) * page_size <= len(prompt) and tuple(prompt[: (k + 1) * page_size]) in seen:
            k += 1
        hit += k * page_size
        seq = list(prompt) + list(output)
        for j in range(1, len(seq) // page_size + 1):
            seen.add(tuple(seq[: j * page_size]))
    return hit / total if total else 0.0
