"""KV-memory backends of the serving simulator: hash-chain ``KVCache`` or ``RadixCache``.

Both are the real llmds objects behind one small interface the engine calls
(``allocate`` / ``append_tokens`` / ``free`` / ``num_free_pages`` /
``active_pages`` / ``stats``):

* :class:`KVCacheBackend` -- :class:`~llmds.kv_cache.KVCache` (vLLM-style paged
  cache; full pages are identified by a chained hash and reused by later requests
  with the same prefix; ``prefix_caching=False`` turns the sharing off).
* :class:`RadixBackend` -- :class:`~llmds.mem_cache.RadixCache` (SGLang's radix
  tree) over a :class:`~llmds.paged_allocator.PagedAllocator` page pool. A new
  request matches its prompt against the tree (``match_prefix``), locks the
  matched path (``inc_lock_ref``) while it runs, and allocates pages only for the
  uncached tail. When its prefill completes, the computed whole pages are inserted
  into the tree and the lock moves to the new node (SGLang's
  ``cache_unfinished_req``), so requests arriving meanwhile already hit them. When
  the pool runs out, unlocked tree leaves are evicted least
  recently used first (``evict``); only when nothing evictable is left does the
  call raise :class:`~llmds.errors.CapacityError`, and the engine then preempts.
  When a request finishes (or is preempted) the whole pages whose KV it computed
  are inserted into the tree (``insert``), its pages that duplicate what the tree
  already holds and its partial last page go back to the pool, and the path is
  unlocked (``dec_lock_ref``).

**Token ids.** ``RadixCache`` keys and ``KVCache`` token ids are ``uint32`` (the page
identity of :mod:`llmds.page_hash`), but simulated token ids are not:
synthetic requests get unique ids ``(request_id + 1) * 2**32 + position`` and a
trace may carry any int64 ids. :class:`TokenRemap` maps them to dense ``uint32``
codes, built per simulation: ids that can repeat (a trace's ``token_ids``) go
through a remapping table ``id -> code`` (a NumPy array for ids below 2**22, a
dictionary above; a request's new ids get the next codes, in increasing id order;
equal ids always get equal codes, so prefix matching is exact); a synthetic
request, whose ids are unique by construction, takes a fresh contiguous block of
codes without any table entry. More than ``2**32`` distinct tokens in one
simulation raise ``ValueError``.

Slot indices stored in the tree are ``page * page_size + offset``; a tree node
always covers whole pages starting at a page boundary, so the pages behind any
node's indices are ``indices[::page_size] // page_size``. :class:`_PagePool`
converts the indices the tree evicts back to page ids for the allocator.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from llmds.errors import CapacityError
from llmds.kv_cache import KVCache
from llmds.mem_cache._tree import find
from llmds.mem_cache.base_prefix_cache import RadixKey
from llmds.mem_cache.radix_cache import RadixCache, TreeNode
from llmds.paged_allocator import PagedAllocator

__all__ = ["KV_BACKENDS", "KVCacheBackend", "RadixBackend", "TokenRemap", "cached_prefix",
           "make_backend"]

KV_BACKENDS = ("kvcache", "radix")
_CODE_LIMIT = 1 << 32
_TABLE_LIMIT = 1 << 22  # ids below this are remapped through a NumPy table


class TokenRemap:
    """Dense ``uint32`` codes for token ids of any integer value (one per simulation).

    Ids in ``[0, 2**22)`` (any real vocabulary) are looked up in a NumPy table
    indexed by id, grown on demand; other ids in a dictionary. Both hand out codes
    from one counter, so equal ids always get equal codes.

    ``encode(ids)``: O(T) vectorised for in-table ids, plus O(k log k) for the k
    new ids and one dictionary look-up per distinct out-of-table id; ``fresh(n)``:
    O(n), no table entry. Memory: 8 bytes per table slot up to the largest id seen
    below 2**22 (32 MiB at most) and one dictionary entry per distinct larger id.
    Thread safety: not thread-safe (one per simulation).

    >>> m = TokenRemap()
    >>> m.encode(np.array([2**40, 7, 2**40])).tolist(), m.fresh(2).tolist()
    ([1, 0, 1], [2, 3])
    >>> m.encode(np.array([7, 9])).tolist()
    [0, 4]
    """

    __slots__ = ("_codes", "_next", "_table")

    def __init__(self) -> None:
        self._codes: dict[int, int] = {}
        self._table = np.full(0, -1, dtype=np.int64)
        self._next = 0

    def __len__(self) -> int:
        """Codes handed out so far. O(1)."""
        return self._next

    def _reserve(self, n: int) -> int:
        start = self._next
        if start + n > _CODE_LIMIT:
            raise ValueError(
                f"more than 2**32 distinct token ids in one simulation ({start + n}); "
                "RadixCache keys are uint32"
            )
        self._next = start + n
        return start

    def _encode_small(self, arr: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """Codes of ids in ``[0, 2**22)`` through the table."""
        hi = int(arr.max())
        table = self._table
        if hi >= table.shape[0]:
            grown = np.full(max(hi + 1, 2 * table.shape[0]), -1, dtype=np.int64)
            grown[: table.shape[0]] = table
            self._table = table = grown
        codes = table[arr]
        missing = codes < 0
        if missing.any():
            new = np.unique(arr[missing])
            start = self._reserve(len(new))
            table[new] = np.arange(start, start + len(new), dtype=np.int64)
            codes = table[arr]
        return codes

    def _encode_large(self, arr: npt.NDArray[Any]) -> npt.NDArray[np.int64]:
        """Codes of other ids through the dictionary."""
        uniq, inv = np.unique(arr, return_inverse=True)
        codes = self._codes
        vals = uniq.tolist()
        new = [v for v in vals if v not in codes]
        if new:
            start = self._reserve(len(new))
            codes.update(zip(new, range(start, start + len(new)), strict=True))
        lut = np.fromiter((codes[v] for v in vals), dtype=np.int64, count=len(vals))
        return lut[inv.reshape(-1)]

    def encode(self, ids: npt.ArrayLike) -> npt.NDArray[np.uint32]:
        """Codes of ``ids`` (equal ids, equal codes; new ids get the next codes)."""
        arr = np.asarray(ids).reshape(-1)
        if arr.size == 0:
            return np.empty(0, dtype=np.uint32)
        if arr.dtype.kind not in "iu":
            raise TypeError(f"token ids must be integers, got dtype {arr.dtype}")
        small = (arr >= 0) & (arr < _TABLE_LIMIT)
        if small.all():
            return self._encode_small(arr.astype(np.int64, copy=False)).astype(np.uint32)
        out = np.empty(arr.shape[0], dtype=np.int64)
        if small.any():
            out[small] = self._encode_small(arr[small].astype(np.int64))
        out[~small] = self._encode_large(arr[~small])
        return out.astype(np.uint32)

    def fresh(self, n: int) -> npt.NDArray[np.uint32]:
        """``n`` codes never handed out before (a request whose ids are all unique)."""
        start = self._reserve(n)
        return np.arange(start, start + n, dtype=np.uint32)


class KVCacheBackend:
    """The hash-chain :class:`~llmds.kv_cache.KVCache` (see the module docstring).

    Each call is the KVCache call of the same name: O(T) hashing + O(P) pages.
    Thread safety: not thread-safe (one per simulation).
    """

    __slots__ = ("kv", "max_pages", "name", "remap")

    def __init__(self, page_size: int, max_pages: int, prefix_caching: bool,
                 remap: TokenRemap | None = None) -> None:
        self.name = "kvcache" if prefix_caching else "off"
        self.max_pages = max_pages
        self.kv = KVCache(
            page_size=page_size, max_pages=max_pages, enable_prefix_sharing=prefix_caching,
            dtype=np.float32,
        )
        # KVCache token ids are uint32, as RadixCache keys; a cluster shares one table
        self.remap = TokenRemap() if remap is None else remap

    def token_ids(self, req: Any) -> npt.NDArray[np.uint32]:
        """The request's token ids as dense uint32 codes (synthetic ones unique). O(T)."""
        if req.token_ids is not None:
            return self.remap.encode(req.token_ids)
        return self.remap.fresh(req.prompt_tokens + req.output_tokens)

    def allocate(self, sid: int, ids: npt.NDArray[Any]) -> int:
        return self.kv.allocate(sid, ids)

    def append_tokens(self, sid: int, ids: npt.NDArray[Any]) -> None:
        self.kv.append_tokens(sid, ids)

    def free(self, sid: int, computed: int) -> None:
        """Free the sequence; its full hashed pages stay cached (``computed`` unused)."""
        self.kv.free(sid)

    def cache_prefill(self, sid: int, computed: int) -> None:
        """No-op: KVCache hashes full pages as soon as their ids are known."""

    @property
    def num_free_pages(self) -> int:
        """Pages a new request could get: free + cached-unreferenced. O(1)."""
        return self.kv.num_free_pages

    def active_pages(self) -> int:
        """Pages referenced by live sequences (shared pages once). O(1)."""
        return self.max_pages - self.kv.num_free_pages

    def stats(self) -> dict[str, Any]:
        return {"backend": self.name, **self.kv.stats()}


class _PagePool:
    """The ``token_to_kv_pool_allocator`` RadixCache frees into: slot ids -> pages.

    ``free(indices)``: O(len(indices) / page_size) pages back to the allocator.
    Thread safety: not thread-safe (its backend's).
    """

    __slots__ = ("alloc", "page_size")

    def __init__(self, alloc: PagedAllocator, page_size: int) -> None:
        self.alloc = alloc
        self.page_size = page_size

    def free(self, indices: npt.NDArray[np.int64]) -> None:
        ps = self.page_size
        self.alloc.free((indices[::ps] // ps).tolist())


class _RadixSeq:
    """A live sequence of the radix backend: locked match + its own pages.

    Thread safety: not thread-safe (its backend's).
    """

    __slots__ = ("chunks", "hit", "node", "num_tokens", "pages", "prefix")

    def __init__(
        self, ids: npt.NDArray[np.uint32], hit: int, node: TreeNode | None,
        prefix: npt.NDArray[np.int64], pages: list[int],
    ) -> None:
        self.chunks = [ids]  # the token codes handed in so far
        self.num_tokens = len(ids)
        self.hit = hit  # tokens matched in the tree (whole pages)
        self.node = node  # locked last node of the match (None: no lock held)
        self.prefix = prefix  # slot indices of the matched tokens (the tree's)
        self.pages = pages  # own pages, covering token positions hit, hit + ps, ...


class RadixBackend:
    """:class:`~llmds.mem_cache.RadixCache` + :class:`~llmds.paged_allocator.PagedAllocator`.

    See the module docstring for the request life cycle. Complexity per call, for
    T tokens and P pages of the request and a tree path of d nodes:
    ``allocate`` O(d + T) (match, lock) plus the eviction's O(k log h);
    ``append_tokens`` O(new pages) (+ eviction); ``free`` O(d + T) (insert,
    unlock). ``num_free_pages`` and ``active_pages`` O(1).

    Invariants (asserted by ``_check``): every pool page is exactly one of free,
    owned by one live sequence, or held by one tree node; the pages held by the
    tree are ``tree.total_size() / page_size``; each live sequence holds
    ``ceil(num_tokens / page_size)`` pages (matched + own).

    Thread safety: not thread-safe (one per simulation).

    >>> b = RadixBackend(page_size=4, max_pages=8)
    >>> ids = b.remap.encode(np.arange(10))
    >>> b.allocate(0, ids), b.active_pages()
    (0, 3)
    >>> b.free(0, computed=10)          # 2 full pages go to the tree, 1 partial is freed
    >>> b.allocate(1, ids), b.active_pages(), b.num_free_pages
    (8, 3, 5)
    """

    __slots__ = ("_hit_tokens", "_queried_tokens", "max_pages", "name", "page_size", "pool",
                 "remap", "seqs", "sharing", "tree")

    def __init__(self, page_size: int, max_pages: int, prefix_caching: bool = True,
                 remap: TokenRemap | None = None) -> None:
        self.name = "radix" if prefix_caching else "off"
        self.page_size = page_size
        self.max_pages = max_pages
        self.sharing = bool(prefix_caching)
        self.pool = PagedAllocator(max_pages)
        self.tree = RadixCache(page_size=page_size,
                               token_to_kv_pool_allocator=_PagePool(self.pool, page_size))
        self.remap = TokenRemap() if remap is None else remap
        self.seqs: dict[int, _RadixSeq] = {}
        self._queried_tokens = 0
        self._hit_tokens = 0

    def token_ids(self, req: Any) -> npt.NDArray[np.uint32]:
        """Dense uint32 codes of the request's ids (see :class:`TokenRemap`). O(T log T)."""
        if req.token_ids is not None:
            return self.remap.encode(req.token_ids)
        return self.remap.fresh(req.prompt_tokens + req.output_tokens)

    # ---------------------------------------------------------------- pages
    def _evictable_pages(self) -> int:
        return self.tree.evictable_size() // self.page_size

    @property
    def num_free_pages(self) -> int:
        """Pages a new request could get: free + evictable tree pages. O(1)."""
        return self.pool.num_free + self._evictable_pages()

    def active_pages(self) -> int:
        """Pages held by live sequences: own pages + locked tree pages. O(1)."""
        return self.pool.num_used - self._evictable_pages()

    def _take(self, n: int) -> list[int]:
        """``n`` pages, evicting LRU tree leaves when short; CapacityError, no change."""
        if n <= 0:
            return []
        short = n - self.pool.num_free
        if short > 0:
            if short > self._evictable_pages():
                raise CapacityError(
                    f"need {n} pages, {self.pool.num_free} free + {self._evictable_pages()} "
                    f"evictable of max_pages={self.max_pages}"
                )
            self.tree.evict(short * self.page_size)
        return self.pool.alloc(n)

    # ------------------------------------------------------------ life cycle
    def allocate(self, sid: int, ids: npt.NDArray[np.uint32]) -> int:
        """Match, lock and allocate the uncached tail; return the matched tokens."""
        if sid in self.seqs:
            raise ValueError(f"sequence {sid} is already live")
        ps = self.page_size
        n = len(ids)
        node: TreeNode | None = None
        hit = 0
        prefix = np.empty(0, dtype=np.int64)
        if self.sharing:
            m = self.tree.match_prefix(RadixKey(ids))
            hit = m.prefix_len
            if hit:
                node, prefix = m.last_node, m.indices
                self.tree.inc_lock_ref(node)
        try:
            pages = self._take(-(-n // ps) - hit // ps)
        except CapacityError:
            if node is not None:
                self.tree.dec_lock_ref(node)
            raise
        self.seqs[sid] = _RadixSeq(ids, hit, node, prefix, pages)
        self._queried_tokens += n
        self._hit_tokens += hit
        return hit

    def append_tokens(self, sid: int, ids: npt.NDArray[np.uint32]) -> None:
        """Extend a live sequence; new pages (with eviction) as it crosses pages."""
        seq = self.seqs[sid]
        k = len(ids)
        if k == 0:
            return
        ps = self.page_size
        total = seq.num_tokens + k
        seq.pages.extend(self._take(-(-total // ps) - -(-seq.num_tokens // ps)))
        seq.chunks.append(ids)
        seq.num_tokens = total

    def _insert(self, seq: _RadixSeq, computed: int) -> tuple[npt.NDArray[np.uint32], int, int]:
        """Insert the computed whole pages; free own pages the tree already had.

        Returns (ids, keep, hit): the inserted codes, their count and the old match.
        ``seq.pages`` loses the freed duplicates and the pages now in the tree.
        """
        ps = self.page_size
        keep = (min(computed, seq.num_tokens) // ps) * ps if self.sharing else 0
        hit = seq.hit
        if keep <= hit:
            return np.empty(0, dtype=np.uint32), 0, hit
        if len(seq.chunks) > 1:
            seq.chunks = [np.concatenate(seq.chunks)]
        ids = seq.chunks[0][:keep]
        own = seq.pages
        mine = np.asarray(own[: (keep - hit) // ps], dtype=np.int64)
        slots = (mine[:, None] * ps + np.arange(ps, dtype=np.int64)).reshape(-1)
        values = np.concatenate((seq.prefix, slots)) if hit else slots
        dup = self.tree.insert(RadixKey(ids), values).prefix_len
        assert hit <= dup <= keep
        dups = own[: (dup - hit) // ps]
        if dups:  # another request inserted these tokens first: keep the tree's copy
            self.pool.free(dups)
        seq.pages = own[(keep - hit) // ps :]
        return ids, keep, hit

    def cache_prefill(self, sid: int, computed: int) -> None:
        """Prefill done: insert the computed whole pages and move the lock to them.

        Later requests with the same prefix hit them while this one still runs
        (SGLang's ``cache_unfinished_req``). O(d + T).
        """
        seq = self.seqs[sid]
        ids, keep, hit = self._insert(seq, computed)
        if keep <= hit:
            return
        m = self.tree.match_prefix(RadixKey(ids))
        assert m.prefix_len == keep
        self.tree.inc_lock_ref(m.last_node)
        if seq.node is not None:
            self.tree.dec_lock_ref(seq.node)
        seq.node, seq.prefix, seq.hit = m.last_node, m.indices, keep

    def free(self, sid: int, computed: int) -> None:
        """Insert the computed whole pages into the tree, free the rest, unlock."""
        seq = self.seqs.pop(sid)
        self._insert(seq, computed)
        if seq.pages:
            self.pool.free(seq.pages)
        if seq.node is not None:
            self.tree.dec_lock_ref(seq.node)

    def cached_prefix(self, ids: npt.NDArray[np.uint32]) -> int:
        """Tokens of ``ids`` the tree holds now (whole pages), without touching it. O(d + T).

        Unlike ``match_prefix`` it refreshes no LRU time and splits no node: a probe
        (a cluster's oracle router, the shared tier's fetch decision) leaves the
        cache exactly as it was. 0 when prefix caching is off.
        """
        return cached_prefix(self.tree, ids) if self.sharing else 0

    def drain(self) -> int:
        """Evict every unlocked tree node; return the free pages afterwards. O(tree)."""
        self.tree.evict(self.tree.evictable_size())
        return self.pool.num_free

    def stats(self) -> dict[str, Any]:
        """Page accounting in the KVCache ``stats()`` vocabulary. O(1)."""
        q = self._queried_tokens
        return {
            "backend": self.name,
            "page_size": self.page_size,
            "max_pages": self.max_pages,
            "num_sequences": len(self.seqs),
            "used_pages": self.active_pages(),
            "cached_pages": self._evictable_pages(),
            "free_pages": self.pool.num_free,
            "tree_tokens": self.tree.total_size(),
            "tree_nodes": self.tree.num_nodes,
            "distinct_token_codes": len(self.remap),
            "prefix_queried_tokens": q,
            "prefix_hit_tokens": self._hit_tokens,
            "prefix_hit_rate": self._hit_tokens / q if q else 0.0,
        }

    def _check(self) -> None:
        """Assert the class invariants. O(pool + tree); tests only."""
        self.tree._check()
        self.pool._check()
        ps = self.page_size
        owned = [p for s in self.seqs.values() for p in s.pages]
        in_tree = (self.tree.all_values_flatten()[::ps] // ps).tolist()
        assert len(set(owned)) == len(owned), "a page is owned twice"
        assert not set(owned) & set(in_tree), "a page is both owned and in the tree"
        assert len(owned) + len(in_tree) == self.pool.num_used, "a page leaked"
        for s in self.seqs.values():
            assert s.hit // ps + len(s.pages) == -(-s.num_tokens // ps)


def cached_prefix(tree: RadixCache, ids: npt.NDArray[np.uint32]) -> int:
    """Whole-page prefix of ``ids`` held by ``tree`` (no extra key), read only. O(d + T).

    The read-only walk ``RadixCache.match_prefix`` itself starts with
    (:func:`llmds.mem_cache._tree.find`), without what follows it there: no LRU time
    is refreshed and no node is split.

    >>> class _Pool:
    ...     def free(self, indices): pass
    >>> t = RadixCache(page_size=2, token_to_kv_pool_allocator=_Pool())
    >>> _ = t.insert(RadixKey(np.arange(6, dtype=np.uint32)))
    >>> cached_prefix(t, np.array([0, 1, 2, 3, 9, 9, 9], dtype=np.uint32))
    4
    """
    ps = tree.page_size
    kb = np.ascontiguousarray(ids, dtype="<u4").tobytes()
    nb = len(kb) - len(kb) % (4 * ps)
    return find(tree.root_node, kb, nb, 4 * ps, ps)[1] // 4


def make_backend(kind: str, page_size: int, max_pages: int, prefix_caching: bool,
                 remap: TokenRemap | None = None) -> Any:
    """The backend named ``kind`` (one of :data:`KV_BACKENDS`). O(max_pages).

    ``remap``: a token-code table to share (a cluster's replicas); None makes one.
    """
    if kind == "kvcache":
        return KVCacheBackend(page_size, max_pages, prefix_caching, remap)
    if kind == "radix":
        return RadixBackend(page_size, max_pages, prefix_caching, remap)
    raise ValueError(f"kv_backend must be one of {KV_BACKENDS}, got {kind!r}")
