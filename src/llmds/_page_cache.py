"""The cached pages behind :class:`~llmds.kv_cache.KVCache`: holders, identity, LRU.

Private to :mod:`llmds.kv_cache`. A KVCache is three parts, one owner per fact:

* :class:`~llmds.paged_allocator.PagedAllocator` owns which page ids are free (its
  free list): a page is taken from it when the KV cache first needs it and given
  back when the page is neither held by a sequence nor cached;
* :class:`PageCache` (this module) owns what happens to a taken page: how many
  block-table entries hold it (``holders``), its identity (the table from a page's
  hash-chain key to the page, each page's key and chain value) and the LRU order
  of the cached pages no sequence holds;
* ``KVCache`` owns the sequences (block tables), the page contents and the counters.

So a page is exactly one of *free* (allocator refcount 0, on its free list), *held*
(``holders >= 1``) or *cached* (``holders == 0``, in the table and the LRU); a taken
page has allocator refcount 1.

**Why the holder counts are not the allocator's refcounts** (measured, 2,000-request
multi-turn chat trace, page 16, SHA-256, the ``kv_cache`` benchmark's replay): with
the allocator as the only counter (its refcount = holders + 1 for the table's
reference, every acquire and release through the validating ``incref`` /
``decref`` / ``refcounts``) the replay took 200 ms against 147-164 ms with this
list, and the speed against vLLM's ``KVCacheManager`` fell from 4.5x to 3.0-3.2x.
The public calls must validate each id (types, range, double release: three to
four C-level passes plus the Python loop, ~200 ns per page on the development
machine) and a block table of ~70 pages goes through them three times per
request. The allocator keeps the one fact it is asked for (taken or free); the
sharing count lives here only.
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
    """The pages of a KVCache: holders per page, the prefix table and the LRU of cached
    pages, over a :class:`~llmds.paged_allocator.PagedAllocator`. See the module
    docstring for the page states and why holders are counted here.

    Keys: with ``sha256`` a page's key is its digest's preimage (parent digest + the
    page's token bytes), so a cached page is found without hashing it again; with
    ``chain64`` it is the 64-bit chain value itself. ``page_digest[p]`` is page
    ``p``'s chain value, the parent of the next page.

    Complexity: ``lookup``/``digests`` O(T) byte work plus one hash per page not yet
    cached; ``acquire``/``share``/``release``/``register`` O(pages);
    ``obtain``/``evict`` O(1) per page; ``reserve`` O(1) when enough pages are
    free, else O(len(hits)). Memory: one int per page, and one key (32 + 4 *
    page_size bytes) and one digest per cached page.

    **The last read-only walk is remembered** (sha256): :meth:`leading_hits` keeps the
    pages it found with the token bytes they cover and the table's ``generation``
    (bumped by every :meth:`register` and :meth:`evict`); a leading :meth:`lookup`
    of tokens that start with those bytes, from the same root and while the
    generation is unchanged, resumes the walk after them instead of walking them
    again. That is vLLM's call pattern (``get_computed_blocks`` probes, then
    ``allocate_slots`` allocates the same prompt): measured on the 2,000-request chat
    trace through :class:`llmds.integrations.vllm.KVCacheManager`, the second walk
    was 15-17 us of a ~100 us request.

    Thread safety: not thread-safe; its KVCache guards it.
    """

    __slots__ = ("algorithm", "alloc", "evictable", "evictions", "generation", "holders",
                 "last_walk", "page_digest", "page_key", "page_size", "seeds", "table")

    def __init__(self, num_pages: int, page_size: int, algorithm: str) -> None:
        self.alloc = PagedAllocator(num_pages)
        self.page_size = page_size
        self.algorithm = algorithm
        self.holders: list[int] = [0] * num_pages  # block-table entries naming each page
        self.table: dict[Any, int] = {}  # key -> cached page
        self.page_key: list[Any] = [None] * num_pages  # the page's key (None: not cached)
        self.page_digest: list[Any] = [None] * num_pages  # the page's chain value
        self.evictable: OrderedDict[int, None] = OrderedDict()  # cached, unheld; LRU first
        self.seeds: dict[Any, Any] = {}
        self.evictions = 0
        self.generation = 0  # bumped whenever the table changes
        # (generation, root, token bytes, pages found) of the last leading_hits walk
        self.last_walk: tuple[int, Any, bytes, tuple[int, ...]] | None = None

    @property
    def num_available(self) -> int:
        """Pages a new sequence can get: free plus cached-unheld. O(1)."""
        return self.alloc.num_free + len(self.evictable)

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
        keys: list[Any] = []
        digests: list[Any] = []
        if not full:
            return found, keys, digests, parent
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
            begin = 0
            walk = self.last_walk
            if (walk is not None and walk[0] == self.generation and walk[1] == parent
                    and raw.startswith(walk[2])):
                known = walk[3][:full]  # still cached: the table has not changed
                if known:
                    parent = digest_of[known[-1]]
                found = list(known)
                begin = len(known) * step
            for pos in range(begin, full * step, step):
                page = get(parent + raw[pos : pos + step])
                if page is None:
                    break
                parent = digest_of[page]
                found.append(page)
            if len(found) < full:
                keys, digests = self.digests(tokens, len(found), full, parent)
                parent = digests[-1]
            return found, keys, digests, parent
        for pos in range(0, full * step, step):
            key = parent + raw[pos : pos + step]
            page = get(key)
            parent = _sha256(key).digest() if page is None else digest_of[page]
            found.append(page)
            keys.append(key)
            digests.append(parent)
        return found, keys, digests, parent

    def leading_hits(self, tokens: npt.NDArray[np.uint32], full: int, parent: Any) -> list[int]:
        """The cached pages of the leading run of hits among the first ``full`` pages of
        ``tokens``, read-only (no page is hashed with sha256, none touched). O(T)."""
        if not full:
            return []
        get = self.table.get
        found: list[int] = []
        if self.algorithm == "chain64":
            for h in self.digests(tokens, 0, full, parent)[0]:
                page = get(h)
                if page is None:
                    break
                found.append(page)
            return found
        raw = tokens.astype("<u4", copy=False).tobytes()
        step = 4 * self.page_size
        digest_of = self.page_digest
        root = parent
        for pos in range(0, full * step, step):
            page = get(parent + raw[pos : pos + step])
            if page is None:
                break
            parent = digest_of[page]
            found.append(page)
        self.last_walk = (self.generation, root, raw[: len(found) * step], tuple(found))
        return found

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
        holders = self.holders
        reused = sum(1 for p in hits if holders[p] == 0)  # cached pages we are about to pin
        available = free + len(self.evictable) - reused
        if num_new > available:
            raise CapacityError(
                f"need {num_new} free pages, {available} available "
                f"({free} free + {len(self.evictable) - reused} cached) of max_pages={num_pages}"
            )

    def acquire(self, pages: list[int]) -> None:
        """One more holder for each of the cached ``pages`` (leaving the LRU). O(P)."""
        holders, evictable = self.holders, self.evictable
        for page in pages:
            if holders[page] == 0:
                del evictable[page]
            holders[page] += 1

    def share(self, pages: list[int]) -> None:
        """One more holder for each of the held ``pages`` (a fork). O(P)."""
        holders = self.holders
        for page in pages:
            holders[page] += 1

    def obtain(self, n: int) -> list[int]:
        """``n`` fresh pages with one holder: free ones first, then LRU evictions. The
        caller made sure they exist (:meth:`reserve`). O(n)."""
        if n <= 0:
            return []
        short = n - self.alloc.num_free
        if short > 0:
            self.evict(short)
        pages = self.alloc.alloc(n)
        holders = self.holders
        for page in pages:
            holders[page] = 1
        return pages

    def evict(self, k: int) -> None:
        """Drop the ``k`` least recently used cached-unheld pages from the table and
        give them back to the allocator. O(k)."""
        table, page_key, page_digest = self.table, self.page_key, self.page_digest
        victims = []
        popitem = self.evictable.popitem
        for _ in range(k):
            page, _none = popitem(last=False)
            del table[page_key[page]]
            page_key[page] = page_digest[page] = None
            victims.append(page)
        self.generation += 1
        self.alloc.free(victims)
        self.evictions += k

    def release(self, pages: list[int]) -> None:
        """Drop one holder of each page of a block table. A page left with none goes
        to the LRU if cached (tail first: a chain is evicted from its end, vLLM's v1
        order), else back to the allocator. O(P)."""
        holders, page_key, evictable = self.holders, self.page_key, self.evictable
        to_free = []
        for page in reversed(pages):
            count = holders[page] - 1
            holders[page] = count
            if count == 0:
                if page_key[page] is None:
                    to_free.append(page)
                else:
                    evictable[page] = None
        if to_free:
            self.alloc.free(to_free)

    def drop(self, page: int) -> None:
        """One holder fewer for a page that keeps at least one (copy-on-write). O(1)."""
        self.holders[page] -= 1

    def register(self, pages: list[int], keys: list[Any], digests: list[Any]) -> None:
        """Cache ``pages[i]`` under ``keys[i]`` with chain value ``digests[i]`` unless that
        key is cached already. O(len(keys))."""
        table, page_key, page_digest = self.table, self.page_key, self.page_digest
        self.generation += 1
        for page, key, digest in zip(pages, keys, digests, strict=False):
            if key not in table:
                table[key] = page
                page_key[page] = key
                page_digest[page] = digest

    def is_cached(self, page: int) -> bool:
        """True if ``page`` has an identity in the table. O(1)."""
        return self.page_key[page] is not None

    def check(self, held: list[int]) -> None:
        """Assert the page states against ``held`` (block-table entries per page, from
        the sequences). O(num_pages + cached); tests only."""
        alloc = self.alloc
        alloc._check()
        assert self.holders == held, "holder counts differ from the block tables"
        ps = self.page_size
        for page, count in enumerate(alloc.refcounts()):
            cached = self.page_key[page] is not None
            in_lru = page in self.evictable
            assert count == (1 if held[page] or cached else 0), f"page {page}: taken or free"
            assert in_lru == (cached and held[page] == 0), f"page {page}: LRU membership"
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
