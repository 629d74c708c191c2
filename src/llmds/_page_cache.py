"""The cached pages behind :class:`~llmds.kv_cache.KVCache`: holders, identity, LRU.

Private to :mod:`llmds.kv_cache`. A KVCache is three parts, one owner per fact:

* :class:`~llmds.paged_allocator.PagedAllocator` owns every page's reference count
  and the free list;
* :class:`PageCache` (this module) owns page *identity* -- the table from a page's
  hash-chain key to the page, each page's key and chain value -- and the LRU order
  of the cached pages no sequence holds;
* ``KVCache`` owns the sequences (block tables), the page contents and the counters.

The table is one holder of each page it caches, like a block table entry. So a page
is exactly one of

* *free*: reference count 0, on the allocator's free list;
* *cached*: in the table, count 1 (the table's), in :attr:`PageCache.evictable`;
* *held*: named by ``h >= 1`` block-table entries, count ``h`` (+1 when in the table).

The holders of a page are therefore ``refcount - (page is in the table)``: derived,
never stored twice.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any

import numpy as np
import numpy.typing as npt

from llmds import page_hash
from llmds._kernels import kv as _kv
from llmds.errors import CapacityError
from llmds.paged_allocator import PagedAllocator

__all__ = ["HASH_ALGORITHMS", "PageCache"]

HASH_ALGORITHMS = ("sha256", "chain64")
_MAX_SEEDS = 4096  # cached namespace roots; a cache of per-request keys must not grow forever
_sha256 = hashlib.sha256


class PageCache:
    """The pages of a KVCache: reference counts (in a PagedAllocator), the prefix table
    and the LRU of cached pages. See the module docstring for the page states.

    Keys: with ``sha256`` a page's key is its digest's preimage (parent digest + the
    page's token bytes), so a cached page is found without hashing it again; with
    ``chain64`` it is the 64-bit chain value itself. ``page_digest[p]`` is page
    ``p``'s chain value, the parent of the next page.

    Complexity: ``lookup``/``digests`` O(T) byte work plus one hash per page not yet
    cached; ``acquire``/``release``/``register`` O(pages); ``obtain``/``evict`` O(1)
    per page; ``reserve`` O(1) when enough pages are free, else O(len(hits)).
    Memory: one key (32 + 4 * page_size bytes) and one digest per cached page.

    Thread safety: not thread-safe; its KVCache guards it.
    """

    __slots__ = ("algorithm", "alloc", "evictable", "evictions", "page_digest", "page_key",
                 "page_size", "seeds", "table")

    def __init__(self, num_pages: int, page_size: int, algorithm: str) -> None:
        self.alloc = PagedAllocator(num_pages)
        self.page_size = page_size
        self.algorithm = algorithm
        self.table: dict[Any, int] = {}  # key -> cached page
        self.page_key: list[Any] = [None] * num_pages  # the page's key (None: not cached)
        self.page_digest: list[Any] = [None] * num_pages  # the page's chain value
        self.evictable: OrderedDict[int, None] = OrderedDict()  # cached, unheld; LRU first
        self.seeds: dict[Any, Any] = {}
        self.evictions = 0

    @property
    def num_available(self) -> int:
        """Pages a new sequence can get: free plus cached-unheld. O(1)."""
        return self.alloc.num_free + len(self.evictable)

    def holders(self) -> list[int]:
        """Block-table entries naming each page (refcount minus the table's). O(num_pages)."""
        key = self.page_key
        return [c - (key[p] is not None) for p, c in enumerate(self.alloc.refcounts())]

    # ------------------------------------------------------------- identity
    def seed(self, extra_key: Hashable | None) -> Any:
        """The chain's root for namespace ``extra_key`` (:func:`llmds.page_hash.root_digest`;
        its first 8 bytes for chain64). Raises TypeError for a non-canonical key. O(1)."""
        cacheable = extra_key is None or type(extra_key) in (int, str, bytes)
        seeds = self.seeds
        if cacheable:
            seed = seeds.get(extra_key)
            if seed is not None:
                return seed
        root = page_hash.root_digest(self.page_size, extra_key)
        seed = root if self.algorithm == "sha256" else int.from_bytes(root[:8], "little")
        if cacheable:
            if len(seeds) >= _MAX_SEEDS:
                seeds.clear()
            seeds[extra_key] = seed
        return seed

    def lookup(
        self, tokens: npt.NDArray[np.uint32], full: int, parent: Any, *, leading: bool
    ) -> tuple[list[int | None], list[Any], list[Any], Any]:
        """``(found, keys, digests, last)`` for the first ``full`` pages of ``tokens``. O(T).

        ``found[i]`` is the cached page with page ``i``'s identity, else ``None``.
        With ``leading`` the look-ups stop at the first miss: ``found`` is the run
        of leading hits and ``keys``/``digests`` cover the pages after it; without,
        they cover all ``full`` pages. ``last`` is the last page's chain value (or
        ``parent`` when ``full == 0``). A hit's digest is read from its page, so
        only pages that are not cached are hashed.
        """
        found: list[int | None] = []
        if not full:
            return found, [], [], parent
        get = self.table.get
        if self.algorithm == "chain64":
            keys = self.digests(tokens, 0, full, parent)[0]
            for h in keys:
                page = get(h)
                if page is None and leading:
                    break
                found.append(page)
            last = keys[-1]
            if leading:
                keys = keys[len(found) :]
            return found, keys, keys, last
        raw = tokens.astype("<u4", copy=False).tobytes()
        step = 4 * self.page_size
        digest_of = self.page_digest
        if leading:
            for pos in range(0, full * step, step):
                page = get(parent + raw[pos : pos + step])
                if page is None:
                    break
                parent = digest_of[page]
                found.append(page)
            keys: list[Any] = []
            digests: list[Any] = []
            if len(found) < full:
                keys, digests = self.digests(tokens, len(found), full, parent)
                parent = digests[-1]
            return found, keys, digests, parent
        keys, digests = [], []
        for pos in range(0, full * step, step):
            key = parent + raw[pos : pos + step]
            page = get(key)
            parent = _sha256(key).digest() if page is None else digest_of[page]
            found.append(page)
            keys.append(key)
            digests.append(parent)
        return found, keys, digests, parent

    def digests(
        self, tokens: npt.NDArray[np.uint32], start: int, stop: int, parent: Any
    ) -> tuple[list[Any], list[Any]]:
        """``(keys, digests)`` of pages ``start..stop-1`` of ``tokens``, chained from
        ``parent`` (the digest of page ``start - 1``), all computed. O(T)."""
        ps = self.page_size
        if self.algorithm == "chain64":
            with np.errstate(over="ignore"):  # only matters under NUMBA_DISABLE_JIT
                keys = _kv.chain_hashes(
                    tokens[start * ps :], ps, stop - start, np.uint64(parent)
                ).tolist()
            return keys, keys
        step = 4 * ps
        raw = tokens[start * ps : stop * ps].astype("<u4", copy=False).tobytes()
        keys, digests = [], []
        # Slicing every page first is ~10% faster per page than slicing inside the loop.
        for page in [raw[i : i + step] for i in range(0, len(raw), step)]:
            key = parent + page
            parent = _sha256(key).digest()
            keys.append(key)
            digests.append(parent)
        return keys, digests

    # ---------------------------------------------------------- page states
    def reserve(self, num_new: int, hits: list[int], num_pages: int) -> None:
        """Raise CapacityError unless ``num_new`` pages can be had besides ``hits``
        (cached pages about to be held). ``num_pages`` is the pool size, for the
        message. O(1), or O(len(hits)) when free pages alone do not suffice."""
        free = self.alloc.num_free
        if num_new <= free:  # enough free pages whatever the hits pin
            return
        evictable = self.evictable
        reused = sum(1 for p in hits if p in evictable)
        available = free + len(evictable) - reused
        if num_new > available:
            raise CapacityError(
                f"need {num_new} free pages, {available} available "
                f"({free} free + {len(evictable) - reused} cached) of max_pages={num_pages}"
            )

    def acquire(self, pages: list[int]) -> None:
        """One more holder for each of the cached ``pages`` (leaving the LRU). O(P)."""
        self.alloc.incref(pages)
        pop = self.evictable.pop
        for page in pages:
            pop(page, None)

    def obtain(self, n: int) -> list[int]:
        """``n`` fresh pages with one holder: free ones first, then LRU evictions. The
        caller made sure they exist (:meth:`reserve`). O(n)."""
        if n <= 0:
            return []
        short = n - self.alloc.num_free
        if short > 0:
            self.evict(short)
        return self.alloc.alloc(n)

    def evict(self, k: int) -> None:
        """Drop the ``k`` least recently used cached-unheld pages from the table. O(k)."""
        table, page_key, page_digest = self.table, self.page_key, self.page_digest
        victims = []
        popitem = self.evictable.popitem
        for _ in range(k):
            page, _none = popitem(last=False)
            del table[page_key[page]]
            page_key[page] = page_digest[page] = None
            victims.append(page)
        self.alloc.free(victims)
        self.evictions += k

    def release(self, pages: list[int]) -> None:
        """Drop one holder of each page of a block table; a cached page left with no
        other holder joins the LRU, tail first (a chain is evicted from its end,
        vLLM's v1 order). O(P)."""
        alloc = self.alloc
        alloc.decref(pages)
        page_key, evictable = self.page_key, self.evictable
        counts = alloc.refcounts(pages)
        for i in range(len(pages) - 1, -1, -1):
            if counts[i] == 1:
                page = pages[i]
                if page_key[page] is not None:
                    evictable[page] = None

    def register(self, pages: list[int], keys: list[Any], digests: list[Any]) -> None:
        """Cache ``pages[i]`` under ``keys[i]`` with chain value ``digests[i]`` unless that
        key is cached already; the table becomes one more holder. O(len(keys))."""
        table, page_key, page_digest = self.table, self.page_key, self.page_digest
        added = []
        for page, key, digest in zip(pages, keys, digests, strict=False):
            if key not in table:
                table[key] = page
                page_key[page] = key
                page_digest[page] = digest
                added.append(page)
        if added:
            self.alloc.incref(added)

    def is_cached(self, page: int) -> bool:
        """True if ``page`` has an identity in the table. O(1)."""
        return self.page_key[page] is not None

    def check(self, held: list[int]) -> None:
        """Assert the page states against ``held`` (block-table entries per page, from
        the sequences). O(num_pages + cached); tests only."""
        alloc = self.alloc
        alloc._check()
        counts = alloc.refcounts()
        ps = self.page_size
        for page, count in enumerate(counts):
            cached = self.page_key[page] is not None
            assert count == held[page] + cached, f"page {page}: refcount vs holders"
            if page in self.evictable:
                assert cached and held[page] == 0, f"page {page}: in the LRU but held"
            elif cached:
                assert held[page] > 0, f"page {page}: cached, unheld, not in the LRU"
            assert cached == (self.page_digest[page] is not None)
        sha = self.algorithm == "sha256"
        for key, page in self.table.items():
            assert self.page_key[page] == key, "hash table and page key disagree"
            if sha:  # the key is the digest's preimage: parent digest + page token bytes
                assert len(key) == page_hash.DIGEST_SIZE + 4 * ps, "key length"
                assert self.page_digest[page] == _sha256(key).digest(), "digest of its key"
            else:
                assert self.page_digest[page] == key
        assert sum(k is not None for k in self.page_key) == len(self.table)
