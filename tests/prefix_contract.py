"""The contract of the radix prefix-cache family, as one Hypothesis state machine.

:class:`PrefixCacheMachine` drives a cache and its token pool the way a serving
engine does and checks, after every step, what every radix cache promises
(cachetools' ``CacheTestMixin`` idea: one suite for a family):

* ``insert`` / ``insert_after_match`` / ``match`` / ``lock`` / ``unlock`` /
  ``evict`` / ``reset`` agree with the cache's naive model (``tests/reference``);
* hostile calls (:class:`~tests.prefix_rules.SafetyRules`) fail cleanly and change
  nothing;
* a pickle or deep copy of the cache (with its pools and locked nodes) is identical
  and independent: the machine may go on with the copy, and the original then never
  changes;
* invariants: ``_check()``, no KV index leaked or freed under a lock, sizes add up.

RadixCache, SWARadixCache and MambaRadixCache subclass it (in their own test files)
with their model and the rules only they have.

**Tensor mode** (``tensor_dtype = "int32"`` or ``"int64"``, tests/test_prefix_tensors.py):
the same machine passes token ids and KV indices as torch tensors of that dtype and
checks the tensor rules on every call: match indices, ``all_values_flatten`` and
every index the cache frees into the pool are tensors of the cache's index format
(the dtype and device of the first KV-index tensor it was given since its last
reset; int64 on the key's device before that) with the values the NumPy path
gives (the model's); bad tensors fail and change nothing.
"""

from __future__ import annotations

import copy
import dataclasses
import pickle
from typing import Any, NamedTuple

import numpy as np
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from llmds.mem_cache import RadixKey, TokenToKVPoolAllocator
from tests.prefix_rules import SafetyRules, snapshot

TOKENS = st.lists(st.integers(0, 3), max_size=10)
EXTRAS = st.sampled_from([None, "ns"])

Prefix = tuple[Any, tuple[int, ...]]


class Lock(NamedTuple):
    node: Any
    token: Any
    toks: tuple[int, ...]  # the matched (locked) tokens
    extra: Any
    indices: Any


def walk_nodes(cache: Any) -> list[tuple[Any, tuple[int, ...], Any]]:
    """``(namespace, tokens before the node, node)`` for every node of ``cache``."""
    out = []
    for extra, root in cache._roots.items():
        stack: list[tuple[Any, tuple[int, ...]]] = [(root, ())]
        while stack:
            node, pre = stack.pop()
            for child in node.children.values():
                out.append((extra, pre, child))
                stack.append((child, pre + tuple(child.key.tolist())))
    return out


def tree_pages(cache: Any, info: Any) -> dict[Prefix, Any]:
    """``{(namespace, tokens up to a page end): info(node, page values, at node end)}``
    for every cached page of ``cache``."""
    ps = cache.page_size
    out: dict[Prefix, Any] = {}
    for extra, pre, node in walk_nodes(cache):
        toks = pre + tuple(node.key.tolist())
        vals = node.value.tolist()
        for end in range(ps, node.num_tokens + 1, ps):
            out[(extra, toks[: len(pre) + end])] = info(
                node, tuple(vals[end - ps : end]), end == node.num_tokens)
    return out


class FormatCheckingPool(TokenToKVPoolAllocator):
    """A token pool that checks every index array it is handed back is a tensor of
    dtype ``dtype`` (tensor mode), or a NumPy array (``dtype`` None)."""

    __slots__ = ("dtype",)

    def __init__(self, size: int, dtype: str | None) -> None:
        super().__init__(size)
        self.dtype = dtype

    def _expect(self, indices: Any) -> None:
        if self.dtype is None:
            assert isinstance(indices, np.ndarray), type(indices)
        else:
            import torch

            assert isinstance(indices, torch.Tensor), type(indices)
            assert indices.dtype == getattr(torch, self.dtype), indices.dtype

    def free(self, indices: Any) -> None:
        self._expect(indices)
        super().free(indices)

    def free_swa(self, indices: Any) -> None:
        self._expect(indices)


class PrefixCacheMachine(SafetyRules, RuleBasedStateMachine):
    """A radix cache over a token pool against its naive model (see the module doc).

    Subclasses set ``page_size`` and implement the hooks: ``make_cache``,
    ``make_model``, ``page_info`` / ``model_pages`` (the cache's and the model's
    pages in one format), ``expect_insert``, ``expect_match``, ``expect_evict``
    and, if they need them, ``insert_kwargs``, ``on_lock`` and ``release_states``.
    """

    page_size = 1
    tensor_dtype: str | None = None  # tensor mode (see the module docstring)

    def __init__(self) -> None:
        super().__init__()
        self.pool = FormatCheckingPool(4096, self.tensor_dtype)
        self.fmt_set = False  # the cache has been given a KV-index tensor since its reset
        self.states: Any = None
        self.cache = self.make_cache()
        self.model = self.make_model()
        self.locks: list[Lock] = []
        self.original: tuple[Any, Any, Any] | None = None  # a copied-from cache

    # ------------------------------------------------------------------ hooks
    def make_cache(self) -> Any:
        raise NotImplementedError

    def make_model(self) -> Any:
        raise NotImplementedError

    @staticmethod
    def page_info(node: Any, page: tuple[int, ...], at_end: bool) -> Any:
        return page

    def model_pages(self) -> dict[Prefix, Any]:
        raise NotImplementedError

    def insert_kwargs(self, toks: list[int], state: bool) -> dict[str, Any]:
        """Extra ``insert`` arguments; ``state``: the caller has something to attach."""
        return {}

    def expect_insert(self, toks: list[int], extra: Any, vals: Any, kw: dict[str, Any],
                      res: Any) -> None:
        raise NotImplementedError

    def expect_match(self, toks: list[int], extra: Any, res: Any) -> None:
        raise NotImplementedError

    def expect_evict(self, n: int, s: int, res: Any, before: dict[Prefix, Any],
                     after: dict[Prefix, Any]) -> None:
        raise NotImplementedError

    def on_lock(self, lock: Lock, by: int) -> None:
        """The model's side of a lock (``by=+1``) or an unlock (``by=-1``)."""

    def release_states(self) -> None:
        """Before a reset: hand the cache's state slots back (the caller's job)."""

    # ------------------------------------------------------------------ helpers
    def pages(self) -> dict[Prefix, Any]:
        return tree_pages(self.cache, self.page_info)

    def _aligned(self, n: int) -> int:
        return n - n % self.page_size

    def _as_value(self, value: Any) -> Any:
        if self.tensor_dtype is None:
            return value
        import torch

        t = torch.from_numpy(np.ascontiguousarray(value))  # float, bool, uint64 stay so
        return t.to(getattr(torch, self.tensor_dtype)) if value.dtype.kind == "i" else t

    def _as_key(self, toks: list[int]) -> Any:
        if self.tensor_dtype is None:
            return toks
        import torch

        return torch.tensor(toks, dtype=getattr(torch, self.tensor_dtype))

    def _host(self, indices: Any) -> Any:
        """Indices the cache returned, checked against the tensor rules, on the host."""
        if self.tensor_dtype is None:
            assert isinstance(indices, np.ndarray) and indices.dtype == np.int64
            return indices
        import torch

        want = getattr(torch, self.tensor_dtype) if self.fmt_set else torch.int64
        assert isinstance(indices, torch.Tensor), type(indices)
        assert indices.dtype == want and indices.device.type == "cpu", indices
        assert indices.ndim == 1
        return indices.numpy()

    def _insert(self, toks: list[int], extra: Any, vals: Any, kw: dict[str, Any]) -> Any:
        res = self.cache.insert(RadixKey(self._as_key(toks), extra), vals, **kw)
        self.fmt_set = self.fmt_set or self.tensor_dtype is not None
        return res

    def _match(self, toks: list[int], extra: Any) -> Any:
        """``match_prefix``, its indices checked (:meth:`_host`) and given back on the
        host, so the hooks see what the NumPy path gives."""
        r = self.cache.match_prefix(RadixKey(self._as_key(toks), extra))
        return dataclasses.replace(r, indices=self._host(r.indices))

    # ------------------------------------------------------------------ rules
    @rule(toks=TOKENS, extra=EXTRAS, state=st.booleans())
    def insert(self, toks: list[int], extra: Any, state: bool = False) -> None:
        host = self.pool.alloc(len(toks))
        vals = self._as_value(host)
        kw = self.insert_kwargs(toks, state)
        res = self._insert(toks, extra, vals, kw)
        assert 0 <= res.prefix_len <= self._aligned(len(toks))
        self.expect_insert(toks, extra, host, kw, res)
        self.pool.free(vals[: res.prefix_len])  # duplicates of cached indices
        self.pool.free(vals[self._aligned(len(toks)) :])  # the unaligned tail is not cached

    @rule(toks=TOKENS, extra=EXTRAS, state=st.booleans())
    def insert_after_match(self, toks: list[int], extra: Any, state: bool) -> None:
        """The serving loop: reuse the matched indices, fresh ones for the rest."""
        r = self._match(toks, extra)
        self.expect_match(toks, extra, r)
        m = r.prefix_len
        host = np.concatenate((r.indices, self.pool.alloc(len(toks) - m)))
        idx = self._as_value(host)
        kw = self.insert_kwargs(toks, state)
        res = self._insert(toks, extra, idx, kw)
        self.expect_insert(toks, extra, host, kw, res)
        if res.prefix_len > m:
            self.pool.free(idx[m : res.prefix_len])
        self.pool.free(idx[max(m, self._aligned(len(toks))) :])

    @rule(toks=TOKENS, extra=EXTRAS, lock=st.booleans())
    def match(self, toks: list[int], extra: Any, lock: bool) -> None:
        r = self._match(toks, extra)
        assert r.prefix_len == len(r.indices)
        assert r.prefix_len % self.page_size == 0 and r.prefix_len <= len(toks)
        self.expect_match(toks, extra, r)
        if lock:
            token = self.cache.inc_lock_ref(r.last_node)
            held = Lock(r.last_node, token, tuple(toks[: r.prefix_len]), extra, r.indices)
            self.locks.append(held)
            self.on_lock(held, +1)

    @precondition(lambda self: self.locks)
    @rule(i=st.integers(0, 100))
    def unlock(self, i: int) -> None:
        held = self.locks.pop(i % len(self.locks))
        self.cache.dec_lock_ref(held.node, held.token)
        self.on_lock(held, -1)

    @rule(n=st.integers(0, 12), s=st.integers(0, 8))
    def evict(self, n: int, s: int) -> None:
        before = self.pages()
        res = self.cache.evict(n, s)
        after = self.pages()
        assert set(after) <= set(before)
        removed = set(before) - set(after)
        assert res.full_evicted == self.page_size * len(removed)
        ps = self.page_size
        for held in self.locks:  # nothing locked leaves the tree
            for end in range(ps, len(held.toks) + 1, ps):
                assert (held.extra, held.toks[:end]) in after, "evicted a locked page"
        for extra, toks in after:  # removal is closed under extension: no orphan
            assert len(toks) == ps or (extra, toks[:-ps]) in after
        self.expect_evict(n, s, res, before, after)

    @rule()
    def reset(self) -> None:
        """``reset`` drops every node without freeing: the caller frees the indices."""
        held = self.cache.all_values_flatten()
        if self.tensor_dtype is None or self.fmt_set:
            self._host(held)
        else:  # no KV-index tensor since the last reset: the cache is empty, NumPy
            assert isinstance(held, np.ndarray) and not held.size
        self.release_states()
        self.cache.reset()
        self.fmt_set = False
        if len(held):
            self.pool.free(held)
        self.locks = []
        self.model = self.make_model()

    @rule(how=st.sampled_from(["pickle", "deepcopy"]), keep=st.booleans())
    def copy(self, how: str, keep: bool) -> None:
        """Pickle or deep-copy the cache with its pools and locked nodes: the copy is
        identical, and with ``keep`` the machine goes on with it."""
        before = snapshot(self.cache, self.pool)
        bundle = (self.cache, self.pool, self.states, self.locks)
        out = pickle.loads(pickle.dumps(bundle)) if how == "pickle" else copy.deepcopy(bundle)
        cache, pool, states, locks = out
        assert snapshot(cache, pool) == before
        assert cache.token_to_kv_pool_allocator is pool
        assert getattr(cache, "mamba_pool", None) is states
        for old, new in zip(self.locks, locks, strict=True):
            assert new.node.root._owner is cache and new.node.id == old.node.id
        cache._check()
        if keep:
            self.original = (self.cache, self.pool, before)
            cache.on_node_evict = self.cache.on_node_evict
            self.cache, self.pool, self.states, self.locks = cache, pool, states, locks

    # ------------------------------------------------------------- invariants
    @invariant()
    def contract(self) -> None:
        c = self.cache
        c._check()
        self.pool._check()
        assert c.evictable_size() + c.protected_size() == c.total_size()
        assert self.pool.num_free + c.total_size() == self.pool.size, "a KV index leaked"
        for held in self.locks:  # a running request's KV is never freed
            assert self.pool._in_use[held.indices].all()
        assert self.pages() == self.model_pages()
        if self.original is not None:  # copies are independent
            cache, pool, snap = self.original
            assert snapshot(cache, pool) == snap, "changing a copy changed the original"

    def teardown(self) -> None:
        while self.locks:
            held = self.locks.pop()
            self.cache.dec_lock_ref(held.node, held.token)
        self.cache.evict(10**6, 10**6)
        assert self.cache.total_size() == 0 and self.pool.num_free == self.pool.size
        if self.states is not None:
            assert self.states.num_free == self.states.size
