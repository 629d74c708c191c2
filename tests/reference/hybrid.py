"""Naive models for the hybrid prefix caches (SWA tombstones, Mamba states).

Both model the cache one page at a time as a dict keyed by ``(extra_key, prefix)``
for every cached page-prefix, and recompute from scratch which prefixes are usable.
O(n**2) per operation: obviously correct, not fast.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

Prefix = tuple[Hashable, tuple[int, ...]]


class NaiveSWACache:
    """Pages with a value and a tombstone flag; the window rule recomputed per match."""

    def __init__(self, page_size: int, window: int) -> None:
        self.page_size = page_size
        self.window = window
        self.value: dict[Prefix, tuple[int, ...]] = {}
        self.tomb: dict[Prefix, bool] = {}

    def _aligned(self, tokens: Sequence[int]) -> tuple[int, ...]:
        n = len(tokens) - len(tokens) % self.page_size
        return tuple(int(t) for t in tokens[:n])

    def cached_len(self, toks: tuple[int, ...], extra: Hashable) -> int:
        ps = self.page_size
        n = 0
        while n + ps <= len(toks) and (extra, toks[: n + ps]) in self.value:
            n += ps
        return n

    def usable(self, toks: tuple[int, ...], length: int, extra: Hashable) -> bool:
        """True if a match may end at ``length``: window of W live tokens, or no tombstone."""
        ps = self.page_size
        flags = [self.tomb[(extra, toks[:e])] for e in range(ps, length + 1, ps)]
        if not any(flags):
            return True
        live = 0
        for f in reversed(flags):
            if f:
                break
            live += ps
        return live >= self.window

    def match(self, tokens: Sequence[int], extra: Hashable = None) -> tuple[int, list[int]]:
        toks = self._aligned(tokens)
        ps = self.page_size
        n = self.cached_len(toks, extra)
        while n > 0 and not self.usable(toks, n, extra):
            n -= ps
        out: list[int] = []
        for e in range(ps, n + 1, ps):
            out.extend(self.value[(extra, toks[:e])])
        return n, out

    def insert(
        self,
        tokens: Sequence[int],
        values: Sequence[int],
        extra: Hashable = None,
        locked: frozenset[Prefix] | set[Prefix] = frozenset(),
    ) -> int:
        """Add/restore every page (a ``locked`` tombstone keeps its value and stays a
        tombstone); return the expected ``prefix_len``."""
        toks = self._aligned(tokens)
        ps = self.page_size
        present = self.cached_len(toks, extra)
        first_tomb = None
        for e in range(ps, len(toks) + 1, ps):
            p = (extra, toks[:e])
            if p in self.value and not self.tomb[p]:
                continue
            if p in self.value and first_tomb is None:
                first_tomb = e - ps
            if p in locked:
                continue
            self.value[p] = tuple(int(v) for v in values[e - ps : e])
            self.tomb[p] = False
        return present if first_tomb is None else first_tomb

    def tombstone_leaves(self) -> list[Prefix]:
        """Tombstoned pages with no cached page after them (must never exist)."""
        ps = self.page_size
        has_child = {(x, t[:-ps]) for (x, t) in self.value}
        return [p for p, t in self.tomb.items() if t and p not in has_child]

    def pages(self) -> dict[Prefix, tuple[tuple[int, ...], bool]]:
        return {p: (v, self.tomb[p]) for p, v in self.value.items()}


class NaiveMambaCache:
    """Pages with values; a state flag at some page ends; usable prefix recomputed.

    ``time`` holds the logical time of the last use of every cached prefix (a
    match touches the KV-matched prefixes, an insert the key's, an unlock the
    locked path's), for the LRU-order checks of eviction. ``ends`` holds the
    prefixes where a tree node ends (page size 1): a match or insert that stops
    inside a node splits it there, and the rest of that node is touched too
    (SGLang marks the lower half of a split just used).
    """

    def __init__(self, chunk: int = 1) -> None:
        self.chunk = chunk
        self.value: dict[Prefix, int] = {}
        self.state: dict[Prefix, bool] = {}
        self.time: dict[Prefix, int] = {}
        self.ends: set[Prefix] = set()
        self.tick = 0

    def _split(self, toks: tuple[int, ...], n: int, extra: Hashable) -> None:
        """A walk stopped at ``toks[:n]`` (same tick): split its node there."""
        p = (extra, toks[:n])
        if n == 0 or p in self.ends:
            return
        cur = p[1]
        while True:  # the node's lower half: a unary path down to the node's end
            cur = next(q[1] for q in self.value if q[0] == extra and q[1][:-1] == cur
                       and len(q[1]) == len(cur) + 1)
            self.time[(extra, cur)] = self.tick
            if (extra, cur) in self.ends:
                break
        self.ends.add(p)

    def cached_len(self, toks: tuple[int, ...], extra: Hashable) -> int:
        n = 0
        while n < len(toks) and (extra, toks[: n + 1]) in self.value:
            n += 1
        return n

    def touch(self, toks: Sequence[int], extra: Hashable = None) -> None:
        """Mark every prefix of ``toks`` (all cached) as just used."""
        self.tick += 1
        t = tuple(int(x) for x in toks)
        for e in range(1, len(t) + 1):
            self.time[(extra, t[:e])] = self.tick

    def match(self, tokens: Sequence[int], extra: Hashable = None) -> tuple[int, list[int]]:
        """Longest cached prefix ending at a state (touches the KV-matched prefixes)."""
        toks = tuple(int(t) for t in tokens)
        kv = self.cached_len(toks, extra)
        self.touch(toks[:kv], extra)
        self._split(toks, kv, extra)
        n = kv
        while n > 0 and not self.state[(extra, toks[:n])]:
            n -= 1
        return n, [self.value[(extra, toks[:e])] for e in range(1, n + 1)]

    def branching(self, tokens: Sequence[int], extra: Hashable = None) -> int | None:
        """SGLang's ``mamba_branching_seqlen``: the KV-matched length, rounded down to
        the chunk, when it goes past the last state; else None."""
        toks = tuple(int(t) for t in tokens)
        kv = self.cached_len(toks, extra)
        n = kv
        while n > 0 and not self.state[(extra, toks[:n])]:
            n -= 1
        if kv == n:
            return None
        aligned = kv // self.chunk * self.chunk
        return aligned if aligned > 0 else None

    def insert(
        self,
        tokens: Sequence[int],
        values: Sequence[int],
        extra: Hashable = None,
        with_state: bool = False,
    ) -> tuple[int, bool]:
        toks = tuple(int(t) for t in tokens)
        present = self.cached_len(toks, extra)
        self.touch(toks[:present], extra)
        self._split(toks, present, extra)
        for e in range(1, len(toks) + 1):
            p = (extra, toks[:e])
            if p not in self.value:
                self.value[p] = int(values[e - 1])
                self.state[p] = False
        if len(toks) > present:
            self.ends.add((extra, toks))
        self.tick -= 1  # the same walk: one tick
        self.touch(toks, extra)
        exist = False
        if toks and with_state:
            p = (extra, toks)
            exist = self.state[p]
            self.state[p] = True
        return present, exist

    def is_leaf(self, p: Prefix) -> bool:
        extra, toks = p
        return not any(q[0] == extra and q[1][:-1] == toks for q in self.value)

    def snapshot(self) -> dict[Prefix, Any]:
        return {p: (v, self.state[p]) for p, v in self.value.items()}

    def sync(self, pages: dict[Prefix, tuple[int, bool]]) -> None:
        """Adopt the cache's pages after an eviction (times kept)."""
        self.value = {p: v for p, (v, _s) in pages.items()}
        self.state = {p: s for p, (_v, s) in pages.items()}
        self.time = {p: t for p, t in self.time.items() if p in self.value}
        self.ends = {p for p in self.ends if p in self.value}
