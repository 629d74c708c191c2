"""The no-op prefix cache: every request is computed from scratch.

Used when prefix caching is disabled, so the scheduler calls one interface either
way. Nothing is stored, so nothing ever matches, locks or is evicted.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from llmds._validate import show
from llmds.mem_cache._keys import evict_counts, out_format, tensor_match
from llmds.mem_cache.base_prefix_cache import (
    BasePrefixCache,
    EvictResult,
    InsertResult,
    MatchResult,
    RadixKey,
    kv_indices,
)

__all__ = ["ChunkCache"]


class ChunkCache(BasePrefixCache):
    """No-op prefix cache: no sharing, no tree, no eviction.

    Invariant: all sizes are 0. Every operation is O(1) (``insert`` validates
    its arguments in O(1)). Memory: O(1).

    Thread safety: stateless; safe from any thread (the pool it checks against is
    only read).

    >>> cache = ChunkCache()
    >>> cache.match_prefix(RadixKey([1, 2, 3])).prefix_len
    0
    >>> cache.insert(RadixKey([1, 2, 3])).prefix_len
    0
    """

    def __init__(self, token_to_kv_pool_allocator: Any = None, device: Any = "cpu") -> None:
        self.token_to_kv_pool_allocator = token_to_kv_pool_allocator
        self.device = device

    def reset(self) -> None:
        """Nothing to clear. O(1)."""

    def match_prefix(self, key: RadixKey | Any) -> MatchResult:
        """Always the empty match (an empty int64 tensor on a tensor key's device). O(1)."""
        res = MatchResult(indices=np.empty(0, dtype=np.int64), last_node=None)
        fmt = out_format(key, None)
        return res if fmt is None else tensor_match(res, fmt)

    def insert(
        self, key: RadixKey | Any, value: npt.ArrayLike | None = None, **kwargs: Any
    ) -> InsertResult:
        """Store nothing; ``prefix_len`` is 0 so the caller keeps its indices. O(n).

        ``value`` is still checked as the other caches check it (one integer index
        per token, ``>= 0``, in the pool's range, allocated), so a caller bug shows
        up with caching off too.
        """
        try:
            n_key = len(key)
        except TypeError:
            raise TypeError(f"key must be a RadixKey or a sequence of token ids, got "
                            f"{show(key)}") from None
        if value is not None:
            kv_indices(value, n_key, self.token_to_kv_pool_allocator)
        return InsertResult()

    def evict(self, num_tokens: int, swa_num_tokens: int = 0) -> EvictResult:
        """Nothing to evict (the counts are still checked). O(1)."""
        evict_counts(num_tokens, swa_num_tokens)
        return EvictResult()

    def inc_lock_ref(self, node: Any) -> None:
        """Nothing to lock. O(1)."""
        return None

    def dec_lock_ref(self, node: Any, token: Any = None, **kwargs: Any) -> None:
        """Nothing to unlock. O(1)."""
