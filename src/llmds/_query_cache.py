"""The pipeline's hot-query cache: a Count-Min sketch decides which queries are hot, a
:class:`~llmds.token_lru.TokenLRU` keeps their results until the index changes.

Every search counts its normalised query; once the count reaches ``hot_threshold``
the results are cached under the full key (query, vector digest, ``top_k``, weight,
fusion, filter). The budget counts result entries (``len(results) + 1`` per query).
``decay_every=N`` halves the counts every N searches, so queries that stop coming
cool down.

Thread safety: safe for concurrent callers: one mutex guards the sketch, the LRU and
the counters (held for a dict operation or a sketch update, never during a search).
"""

from __future__ import annotations

import threading
from collections.abc import Hashable
from typing import Any

from llmds.cmsketch import CountMinSketch
from llmds.token_lru import TokenLRU

__all__ = ["QueryCache", "entry_cost"]

Results = tuple[tuple[int, float], ...]


def entry_cost(results: Results) -> int:
    """Budget units of one cached result list: its entries plus one for the key."""
    return len(results) + 1


class QueryCache:
    """Counts queries, caches the results of hot ones. See the module docstring.

    Complexity: ``lookup``/``store`` O(sketch depth) + O(1) dict work; ``clear``
    O(cached queries). Memory: ``8 * width * depth`` bytes of sketch plus the
    cached results.
    """

    __slots__ = ("_budget", "_decay_every", "_hot_threshold", "_lock", "_lru", "hits",
                 "invalidations", "misses", "searches", "sketch")

    def __init__(self, budget: int, hot_threshold: int, width: int, depth: int,
                 decay_every: int | None, seed: int) -> None:
        self.sketch = CountMinSketch(width, depth, seed=seed)
        self._lru: TokenLRU[Any, Results] | None = TokenLRU(budget, entry_cost) if budget \
            else None
        self._budget = budget
        self._hot_threshold = hot_threshold
        self._decay_every = decay_every
        self._lock = threading.Lock()
        self.hits = self.misses = self.searches = self.invalidations = 0

    @property
    def enabled(self) -> bool:
        return self._lru is not None

    def get(self, key: Hashable) -> Results | None:
        """The cached results of ``key`` or None (counts nothing). O(1)."""
        if self._lru is None:
            return None
        with self._lock:
            return self._lru.get(key)

    def count(self, norm: str | None, hit: bool | None) -> bool:
        """Count one search of ``norm`` (``hit``: True/False when the cache was asked,
        None when not); True if ``norm`` is now hot. O(sketch depth)."""
        with self._lock:
            self.searches += 1
            if self._decay_every is not None and self.searches % self._decay_every == 0:
                self.sketch.decay()  # aging: yesterday's hot queries cool down
            if norm is None:
                return False
            self.sketch.add(norm)
            if hit is None:
                return False
            if hit:
                self.hits += 1
                return False
            self.misses += 1
            return self.sketch.estimate(norm) >= self._hot_threshold

    def store(self, key: Hashable, results: Results) -> None:
        """Cache ``results`` (a list costlier than the whole budget is not cached)."""
        if self._lru is not None and entry_cost(results) <= self._budget:
            with self._lock:
                self._lru.put(key, results)

    def clear(self, invalidate: bool = False) -> None:
        """Drop every cached result (counts stay); ``invalidate`` counts an index change."""
        with self._lock:
            if self._lru is not None and len(self._lru):
                self._lru.clear()
                if invalidate:
                    self.invalidations += 1

    def reset(self) -> None:
        """Empty the cache, forget every count, zero the hit/miss counters."""
        with self._lock:
            if self._lru is not None:
                self._lru.clear()
            self.sketch.clear()
            self.hits = self.misses = 0

    def stats(self) -> dict[str, Any]:
        with self._lock:
            lru = self._lru
            lookups = self.hits + self.misses
            return {"num_searches": self.searches, "cache_hits": self.hits,
                    "cache_misses": self.misses,
                    "cache_hit_rate": self.hits / lookups if lookups else 0.0,
                    "hot_queries": len(lru) if lru is not None else 0,
                    "hot_threshold": self._hot_threshold,
                    "cache_tokens": lru.total_tokens() if lru is not None else 0,
                    "cache_budget": self._budget, "cache_invalidations": self.invalidations,
                    "queries_counted": self.sketch.total}

    def keys(self) -> list[Any]:
        with self._lock:
            return [] if self._lru is None else list(self._lru)

    def _check(self) -> None:
        with self._lock:
            if self._lru is not None:
                self._lru._check()
                assert self._lru.total_tokens() <= self._budget
            assert self.hits + self.misses <= self.searches
