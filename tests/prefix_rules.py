"""Hostile-caller rules shared by the prefix caches' stateful tests.

:class:`SafetyRules` is mixed into the RadixCache, SWARadixCache and MambaRadixCache
state machines. Each rule makes a call that must fail (bad KV indices, a release of
a node the caller never locked, an eviction whose pool refuses the free) and checks
that the call raised a clear error and changed nothing: the tree (every node's
tokens, indices, locks, times, states and, for the Mamba cache, both LRU lists),
the sizes and the token pool.
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
from hypothesis import strategies as st
from hypothesis.stateful import rule

from llmds.mem_cache import MambaPool, MambaRadixCache, RadixCache, RadixKey, SWARadixCache


def make_radix(pool: Any) -> Any:
    return RadixCache(token_to_kv_pool_allocator=pool)


def make_swa(pool: Any) -> Any:
    return SWARadixCache(sliding_window_size=2, token_to_kv_pool_allocator=pool)


def make_mamba(pool: Any) -> Any:
    return MambaRadixCache(token_to_kv_pool_allocator=pool, mamba_pool=MambaPool(8))


FACTORIES = [make_radix, make_swa, make_mamba]  # one of each radix cache over ``pool``


class Refused(RuntimeError):
    """What a refusing pool raises."""


class RefusingPool:
    """A token pool that refuses every ``free`` (and ``free_swa``) and changes nothing."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.size = inner.size

    def is_allocated(self, indices: Any) -> bool:
        return bool(self.inner.is_allocated(indices))

    def _refuse(self, indices: Any) -> None:
        raise Refused("the pool refuses this free")

    def free(self, indices: Any) -> None:
        self._refuse(indices)

    def free_swa(self, indices: Any) -> None:
        self._refuse(indices)


def _walk_list(sentinel: Any, nxt: str) -> list[int]:
    out = []
    n = getattr(sentinel, nxt)
    while n is not sentinel:
        out.append(n.id)
        n = getattr(n, nxt)
    return out


def snapshot(cache: Any, pool: Any) -> tuple[Any, ...]:
    """Everything a failed call must leave as it was (the cache, its token pool
    ``pool`` and its state pool). O(tree + pool)."""
    nodes = []
    for extra, root in cache._roots.items():
        stack = [(root, b"")]
        while stack:
            node, pre = stack.pop()
            for child in node.children.values():
                row = [repr(extra), pre + child.kb, child.value.tolist(), child.lock_ref,
                       getattr(child, "self_lock_ref", None), child.last_access,
                       child.evicted, child.id]
                for extra_field in ("swa_tombstone", "swa_lock_ref", "swa_boundary",
                                    "mamba_value", "mamba_lock_ref"):
                    row.append(getattr(child, extra_field, None))
                nodes.append(tuple(row))
                stack.append((child, pre + child.kb))
    sizes = [cache.evictable_size(), cache.protected_size(), cache.total_size(),
             cache.swa_evictable_size(), cache.swa_protected_size()]
    lists: list[Any] = []
    if hasattr(cache, "_flru"):
        lists = [_walk_list(cache._flru, "f_next"), _walk_list(cache._mlru, "m_next")]
    if hasattr(cache, "_swa_locks"):  # lock id -> (locked node, boundary marker)
        lists = sorted((k, n.id, m) for k, (n, m) in cache._swa_locks.items())
    free = sorted(pool._free[: pool._num_free].tolist())
    states = getattr(cache, "mamba_pool", None)
    state_free = sorted(states._free) if states is not None else []
    return tuple(sorted(nodes)), tuple(sizes), repr(lists), tuple(free), tuple(state_free)


class SafetyRules:
    """Rules for a machine whose cache is ``self.cache`` and whose token pool (a
    TokenToKVPoolAllocator) is ``self.pool``."""

    def _cache(self) -> Any:
        return self.cache  # type: ignore[attr-defined]

    def _as_value(self, value: Any) -> Any:
        """``value`` as the machine passes KV indices (a tensor in tensor mode)."""
        return value

    def _as_key(self, toks: list[int]) -> Any:
        """Token ids as the machine passes them (a tensor in tensor mode)."""
        return toks

    @property
    def _tokens(self) -> Any:
        return self.pool  # type: ignore[attr-defined]

    def _expect_no_change(self, call: Any, errors: Any) -> None:
        cache = self._cache()
        before = snapshot(cache, self._tokens)
        try:
            call()
        except errors:
            pass
        else:
            raise AssertionError("the call was accepted")
        assert snapshot(cache, self._tokens) == before, "a failed call changed the cache"
        cache._check()

    @rule(kind=st.sampled_from(["negative", "too_large", "wrapped", "float", "bool",
                                "freed", "length", "nested"]),
          toks=st.lists(st.integers(0, 2), min_size=1, max_size=6))
    def bad_insert(self, kind: str, toks: list[int]) -> None:
        # token 7 starts no cached key, and whole pages: every index would be taken
        ps = self._cache().page_size
        toks = [7, *toks]
        toks += [7] * (-len(toks) % ps)
        n = len(toks)
        pool = self._tokens
        good = pool.alloc(n)
        value: Any = good.copy()
        if kind == "negative":
            value[-1] = -1
        elif kind == "too_large":
            value[-1] = pool.size
        elif kind == "wrapped":
            value = good.astype(np.uint64)
            value[-1] = np.uint64(2**64 - 1)
        elif kind == "float":
            value = good.astype(np.float64)
        elif kind == "bool":
            value = np.ones(n, dtype=bool)
        elif kind == "freed":
            stale = pool.alloc(1)
            pool.free(self._as_value(stale))
            value[-1] = stale[0]
        elif kind == "length":
            value = good[:-1]
        else:
            value = [good.tolist()]
        if not isinstance(value, list):
            value = self._as_value(value)  # a float, bool, uint64, short... tensor
        key = RadixKey(self._as_key(toks))
        try:
            self._expect_no_change(
                lambda: self._cache().insert(key, value), (TypeError, ValueError)
            )
        finally:
            pool.free(self._as_value(good))

    @rule(pick=st.integers(0, 1000), with_token=st.booleans())
    def bad_release(self, pick: int, with_token: bool) -> None:
        """Release a node the caller never locked (an ancestor of a lock, any node)."""
        cache = self._cache()
        nodes = [n for n in cache._iter_nodes() if n.self_lock_ref == 0]
        if not nodes:
            return
        node = nodes[pick % len(nodes)]
        token = True if with_token else None
        self._expect_no_change(lambda: cache.dec_lock_ref(node, token), ValueError)
        assert node.lock_ref >= 0

    @rule(n=st.integers(1, 20), s=st.integers(0, 3))
    def refused_evict(self, n: int, s: int) -> None:
        """The pool refuses the free: the tree keeps every node, the pool every slot.

        ``s`` (the second phase) only for the SWA cache, whose tombstones go through
        the pool's ``free_swa``; the Mamba cache's states go to its state pool."""
        cache = self._cache()
        if not hasattr(cache, "swa_total_size"):
            s = 0
        real = cache.token_to_kv_pool_allocator
        cache.token_to_kv_pool_allocator = RefusingPool(real)
        notified = len(getattr(self, "evicted_ids", []))
        try:
            before = snapshot(cache, self._tokens)
            with contextlib.suppress(Refused):
                cache.evict(n, s)
            assert snapshot(cache, self._tokens) == before, "a refused evict changed the cache"
        finally:
            cache.token_to_kv_pool_allocator = real
        assert len(getattr(self, "evicted_ids", [])) == notified, "notified before the free"
        cache._check()
