"""Paged KV cache with hash-chain prefix sharing, copy-on-write and LRU reuse."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from llmds import page_hash
from llmds._kv_tokens import Seq as _Seq
from llmds._kv_tokens import TokenPath
from llmds._kv_values import (
    check_dtype,
    check_token_shape,
    coerce_tensor_values,
    coerce_values,
    make_pool,
    same_values,
)
from llmds._page_cache import HASH_ALGORITHMS, PageCache
from llmds._torch import pool_spec
from llmds._validate import check_bool, check_choice, check_int, check_size, show
from llmds.errors import UnknownSequenceError
from llmds.paged_allocator import MAX_NUM_PAGES

if TYPE_CHECKING:
    from llmds._remote_hooks import PagedRemote

__all__ = ["MAX_PAGE_SIZE", "MAX_POOL_BYTES", "KVCache"]

MAX_PAGE_SIZE = 1 << 20  # tokens per page
MAX_POOL_BYTES = 1 << 40  # 1 TiB of (lazily mapped) pool address space


class KVCache(TokenPath):
    """Paged KV cache over a preallocated page pool (NumPy, or torch), with prefix sharing.

    The payload lives in ``pool``, an array of shape ``(max_pages, page_size,
    *token_shape)`` and dtype ``dtype``; a sequence is a *block table* (a list
    of page ids, :meth:`block_table`) plus its token count. The default stores
    one ``float64`` scalar per token, so the usage-guide examples (``kv_tokens`` a
    list of numbers) run as written; ``get`` returns Python floats, which compare
    equal to the ints written. The pool is made with ``np.zeros``, whose memory
    the OS maps lazily: the defaults reserve 10000 * 512 * 8 B = 41 MB of
    address space but RSS grows only with the pages actually written.

    **Torch pool.** Given a torch dtype (``dtype=torch.bfloat16``, any float
    including float8, or int8 to int64 and uint8) or a ``device`` (then a NumPy
    dtype is mapped to its torch twin), ``pool`` is a torch tensor of that dtype on
    that device (on the CPU a view of lazily mapped ``np.zeros`` memory; elsewhere
    ``torch.zeros``), the layout an engine's attention kernel reads through
    :meth:`block_table`. Values written (:meth:`attach`, :meth:`append`) may then
    be tensors on any device as well as lists or arrays; they are copied onto the
    pool's device. A float pool takes finite values of magnitude at most its
    dtype's largest (a bfloat16 or float8 overflow is an error, never inf or a
    saturated value); :meth:`get_array` returns a tensor on the pool's device,
    :meth:`get` Python numbers. Everything else (sequences, page identity, LRU)
    stays on the host and behaves exactly as with a NumPy pool; a torch pool
    cannot have a ``remote`` tier. torch is imported only when a torch pool is asked
    for (``pip install 'llmds[torch]'``).

    **Prefix sharing** (``enable_prefix_sharing=True``). Every *full* page whose
    token ids are known (the pages covered by ``prefix_tokens`` in
    :meth:`attach`, every full page of a token-level sequence from
    :meth:`allocate`/:meth:`append_tokens`) gets an identity, a chained hash
    ``H(parent, page_token_ids)`` whose first parent is the root of the namespace
    ``extra_key`` (tenant, LoRA id, model) and the page size. Two sequences whose
    prefixes have the same identity share the page and its reference count goes
    up. A partial page is never shared through the hash table; it is shared only
    by :meth:`fork`, under copy-on-write.

    **Tenant isolation.** The default ``hash_algorithm="sha256"`` is the page
    identity of :mod:`llmds.page_hash` (SHA-256 chained over the parent digest and
    the page's token ids as uint32 little-endian; the root digests the page size
    and a canonical, type-tagged encoding of ``extra_key``), so no token sequence
    can be crafted to land on another namespace's or another prefix's page, and
    distinct keys never alias (``1`` vs ``"1"`` vs ``True``, which is rejected).
    The table is keyed by each page's exact preimage (parent digest + token
    bytes), so a cached page is found without recomputing its digest and only new
    pages are hashed. ``hash_algorithm="chain64"`` is a 64-bit xxHash-style chain
    in a numba kernel (:mod:`llmds._kernels.kv`), about 2x faster on prompt-heavy
    traces but **unsafe with untrusted token ids**: the chain is invertible, so a
    tenant can compute a page whose hash equals another prefix's and be served
    (or serve) that KV. Use it only when every token sequence is trusted.
    ``extra_key`` must be ``None``, an int, str, bytes or a tuple of those.
    Token ids must be ints in ``[0, 2**32)``; with ``vocab_size`` they must be
    below it (both rejected, never wrapped).

    **Copy-on-write.** A page with more than one holder is never written: an
    :meth:`attach` whose values differ from the cached page with the same hash
    gets a private page, and :meth:`append`/:meth:`append_tokens` on a sequence
    whose last, partial page is shared (after :meth:`fork`) first copies it.
    Both count as ``cow_copies`` in :meth:`stats`.

    **Remote tier** (``remote=``: a page store such as
    :class:`llmds.dist.RedisPageStore`, or a :class:`llmds.dist.RemoteTier` around one
    for background write-back). The remote page is this cache's page: the store's
    ``page_size`` must equal ``page_size`` and its page shape and dtype the pool's
    ``(page_size, *token_shape)`` and ``dtype``; it needs prefix sharing and
    ``hash_algorithm="sha256"``. :meth:`allocate` continues its run of local hits
    with the run of pages the store holds (fetched into fresh pages, counted in
    ``prefix_hit_tokens`` and ``remote_hit_tokens``); pages :meth:`allocate` and
    :meth:`append_tokens` cache are written back when a sequence holding them is
    released (:meth:`detach`/:meth:`free`: the engine writes their KV in between),
    pages :meth:`attach` caches at once. A store failure is a miss or a dropped write,
    never an error here. The store key is the :mod:`llmds.page_hash` digest, so a
    :class:`~llmds.mem_cache.RadixCache` replica with the same store shares these
    pages (:mod:`llmds._remote_tier`). A cache with a remote tier cannot be pickled.

    **Caching and eviction.** When its last holder detaches, a hashed page is
    not freed: it stays in the hash table, unreferenced, and a later request
    with the same prefix reuses it. Such pages sit in an LRU list (an
    ``OrderedDict``, i.e. an intrusive doubly linked list, O(1) touch and pop);
    new pages come from the free list first and then from the least recently
    used cached page. A detached sequence's pages enter the list tail-first,
    so a chain is evicted from its end before its head (vLLM's v1 block pool
    order). :meth:`evict` drops cached pages on demand.

    Running out of pages raises :class:`~llmds.errors.CapacityError` and leaves
    the cache unchanged; every call validates its input before mutating.
    Unknown sequence ids raise :class:`~llmds.errors.UnknownSequenceError`
    (except :meth:`get`, which returns ``None`` like ``dict.get``); reusing a
    live id raises ``ValueError``.

    **Who owns what.** The :class:`~llmds.paged_allocator.PagedAllocator` owns
    which pages are free; a private part (``llmds._page_cache``) owns each taken
    page's holder count, its identity (the prefix table) and the LRU of cached
    pages (its module docstring gives the measurement behind counting holders
    there rather than in the allocator); this class owns the sequences, the
    values and the counters.

    Invariants (asserted by :meth:`_check`): each page's holder count equals the
    number of block-table entries naming it; a page is exactly one of free (on
    the allocator's free list), held (count >= 1) or cached (count 0, hashed, in
    the LRU list), and taken from the allocator unless free; the hash table and
    each page's hash agree; no partial page is hashed.

    Complexity (P = pages touched, T = tokens): ``attach`` O(T) (plus one
    equality check per shared page), ``get`` O(T), ``detach`` O(P),
    ``append`` O(T) amortised, ``fork`` O(P), ``block_table`` O(P),
    ``allocate``/``append_tokens`` O(T) byte work + one SHA-256 per new full page +
    O(P) dictionary work, ``evict`` O(1) per page, ``stats`` O(max_pages).
    Memory: the pool (``max_pages * page_size * prod(token_shape) * itemsize``
    bytes, capped at :data:`MAX_POOL_BYTES`), plus O(1) Python objects per page
    and per sequence and, per cached page, its key (32 + 4 * page_size bytes) and
    digest (32 bytes).

    Copies: a KVCache pickles and deep-copies (allocator, table, sequences and the
    whole pool array, so a pickle is about as large as the pool) to an independent
    cache that behaves the same.

    Names: ``max_pages`` (argument, property, ``stats()`` key) is the pool size,
    called ``num_pages`` everywhere else in llmds; it keeps the name of the API
    this library started from. :meth:`free` is :meth:`detach` under vLLM's name
    (``KVCacheManager.free``), for the token-level path
    :meth:`allocate` / :meth:`append_tokens` / :meth:`free`.

    Every argument is validated before anything changes: values must be numbers
    (``None``, strings and bools are rejected; integer pools take integers in
    range, float pools finite values); sizes are capped before allocating
    (``page_size <= MAX_PAGE_SIZE``, ``max_pages <= MAX_NUM_PAGES``, the pool
    ``<= MAX_POOL_BYTES``).

    Thread safety: not thread-safe; guard it with a lock when shared.

    >>> cache = KVCache(page_size=4, max_pages=8)
    >>> cache.attach(1, [1, 2, 3, 4, 5], prefix_tokens=[1, 2, 3, 4])
    >>> cache.attach(2, [1, 2, 3, 4, 9], prefix_tokens=[1, 2, 3, 4])
    >>> cache.block_table(1).tolist(), cache.block_table(2).tolist()
    ([0, 1], [0, 2])
    >>> cache.get(2)
    [1.0, 2.0, 3.0, 4.0, 9.0]
    """

    __slots__ = (
        "_cow_copies",
        "_dtype",
        "_hit_tokens",
        "_page_size",
        "_pages",
        "_queried_tokens",
        "_remote",
        "_seqs",
        "_sharing",
        "_token_shape",
        "_vocab_size",
        "pool",
    )
    # the token-level path lives in the TokenPath mixin; named here so the class (and its
    # API reference) lists it as its own
    allocate = TokenPath.allocate
    cached_pages = TokenPath.cached_pages
    append_tokens = TokenPath.append_tokens

    def __init__(
        self,
        page_size: int = 512,
        max_pages: int = 10000,
        enable_prefix_sharing: bool = True,
        *,
        token_shape: tuple[int, ...] = (),
        dtype: npt.DTypeLike = np.float64,
        hash_algorithm: str = "sha256",
        vocab_size: int | None = None,
        remote: Any = None,
        device: Any = None,
    ) -> None:
        ps = check_int(page_size, "page_size", minimum=1, maximum=MAX_PAGE_SIZE)
        n = check_size(max_pages, "max_pages", maximum=MAX_NUM_PAGES,
                       why="see llmds.paged_allocator.MAX_NUM_PAGES")
        shape = check_token_shape(token_shape)
        spec = pool_spec(dtype, device, "KVCache with a torch dtype or device")
        dt: Any = check_dtype(dtype) if spec is None else spec[0]
        if spec is not None and remote is not None:
            raise ValueError("remote= needs a NumPy pool; a torch dtype or device was given")
        sharing = check_bool(enable_prefix_sharing, "enable_prefix_sharing")
        algo = check_choice(hash_algorithm, "hash_algorithm", HASH_ALGORITHMS)
        vocab = None
        if vocab_size is not None:
            vocab = check_int(vocab_size, "vocab_size", minimum=1, maximum=page_hash.TOKEN_LIMIT)
        pool = make_pool((n, ps, *shape), dt, spec, MAX_POOL_BYTES)
        self._page_size = ps
        self._token_shape = shape
        self._dtype = dt
        self._sharing = sharing
        self._vocab_size = vocab
        self.pool = pool
        self._remote: PagedRemote | None = None
        if remote is not None:
            from llmds._remote_hooks import PagedRemote
            self._remote = PagedRemote(remote, page_shape=(ps, *shape), dtype=dt,
                                       sharing=sharing, algorithm=algo)
        self._pages = PageCache(n, ps, algo)
        self._seqs: dict[Hashable, _Seq] = {}
        self._queried_tokens = 0
        self._hit_tokens = 0
        self._cow_copies = 0

    # ----------------------------------------------------------- properties
    @property
    def page_size(self) -> int:
        """Tokens per page. O(1)."""
        return self._page_size

    @property
    def remote(self) -> Any:
        """The :class:`llmds.dist.RemoteTier` behind ``remote=`` (``None`` without). O(1)."""
        return None if self._remote is None else self._remote.tier

    @property
    def max_pages(self) -> int:
        """Pages in the pool (``num_pages`` elsewhere in llmds). O(1)."""
        return self._pages.alloc.num_pages

    @property
    def num_free_pages(self) -> int:
        """Pages available to new sequences: free plus cached-unreferenced. O(1)."""
        return self._pages.num_available

    def can_allocate(self, num_tokens: int) -> bool:
        """True if a new sequence of ``num_tokens`` tokens fits, even with no cache hit. O(1)."""
        n = check_int(num_tokens, "num_tokens", minimum=0)
        return -(-n // self._page_size) <= self._pages.num_available

    def __len__(self) -> int:
        """Number of live sequences. O(1)."""
        return len(self._seqs)

    def __contains__(self, seq_id: object) -> bool:
        """True if ``seq_id`` is a live sequence (False for an unhashable one). O(1)."""
        try:
            return seq_id in self._seqs
        except TypeError:
            return False

    # ------------------------------------------------------------- seed API
    def attach(
        self,
        seq_id: Hashable,
        kv_tokens: Sequence[Any] | npt.ArrayLike,
        prefix_tokens: Sequence[int] | npt.ArrayLike | None = None,
        *,
        extra_key: Hashable | None = None,
    ) -> None:
        """Store ``kv_tokens`` (one value per token) as sequence ``seq_id``. O(T).

        ``prefix_tokens`` are the token ids of the first ``len(prefix_tokens)``
        positions (at most ``len(kv_tokens)``); each full page they cover is
        shared with any cached page of the same hash chain in namespace
        ``extra_key`` whose contents equal the values being written, and
        otherwise written to a fresh page and cached for later requests.
        Raises ``ValueError`` for a live ``seq_id`` or malformed input and
        :class:`~llmds.errors.CapacityError` when the pages do not fit.
        """
        self._require_new(seq_id, "seq_id")
        data = self._coerce_values(kv_tokens, "kv_tokens", True)
        pages = self._pages
        seed = pages.seed(extra_key)
        ps = self._page_size
        n = data.shape[0]
        num_pages = -(-n // ps)
        prefix = None
        if prefix_tokens is not None:
            prefix = self._coerce_tokens(prefix_tokens, "prefix_tokens")
            if prefix.shape[0] > n:
                raise ValueError(
                    f"prefix_tokens has {prefix.shape[0]} tokens, more than the {n} in kv_tokens"
                )
        slots: list[int | None] = [None] * num_pages
        fresh_ids: list[int] = []  # page indices to register, with their keys and digests
        keys: list[Any] = []
        digests: list[Any] = []
        cow = 0
        if prefix is not None and self._sharing:
            found, all_keys, all_digests, _ = pages.lookup(prefix, prefix.shape[0] // ps,
                                                           seed, leading=False)
            pool = self.pool
            for i, page in enumerate(found):
                if page is None:
                    fresh_ids.append(i)
                    keys.append(all_keys[i])
                    digests.append(all_digests[i])
                elif same_values(pool[page], data[i * ps : (i + 1) * ps]):
                    slots[i] = page
                else:
                    cow += 1  # writing other values into a shared page: private copy
        hits = [p for p in slots if p is not None]
        pages.reserve(num_pages - len(hits), hits, self.max_pages)
        # ---- nothing below raises: mutate
        pages.acquire(hits)
        it = iter(pages.obtain(num_pages - len(hits)))
        table = [p if p is not None else next(it) for p in slots]
        pool = self.pool
        for i, page in enumerate(table):
            if slots[i] is None:
                chunk = data[i * ps : (i + 1) * ps]
                pool[page, : chunk.shape[0]] = chunk
        pages.register([table[i] for i in fresh_ids], keys, digests)
        if self._remote is not None:
            self._remote.push([table[i] for i in fresh_ids], digests, pool)
        self._seqs[seq_id] = _Seq(table, n, extra_key)
        if prefix is not None and self._sharing:
            self._queried_tokens += prefix.shape[0]
            self._hit_tokens += len(hits) * ps
        self._cow_copies += cow

    def detach(self, seq_id: Hashable) -> None:
        """Release sequence ``seq_id``; its hashed pages stay cached. O(P).

        Raises :class:`~llmds.errors.UnknownSequenceError` for an unknown id.
        """
        seq = self._seq(seq_id)
        del self._seqs[seq_id]
        if self._remote is not None:
            pc = self._pages
            self._remote.release(seq.pages, self.pool, pc.page_key, pc.page_digest)
        self._pages.release(seq.pages)

    def free(self, seq_id: Hashable) -> None:
        """:meth:`detach` under vLLM's name (``KVCacheManager.free``). O(P)."""
        self.detach(seq_id)

    def get(self, seq_id: Hashable) -> list[Any] | None:
        """A deep copy of the sequence's values, or ``None`` if unknown. O(T).

        Returns a list of Python scalars (``token_shape == ()``) or of nested
        lists, one per token; changing it never touches the cache.
        """
        try:
            seq = self._seqs.get(seq_id)
        except TypeError:
            raise TypeError(f"seq_id must be hashable, got {show(seq_id)}") from None
        if seq is None:
            return None
        return self._values(seq).tolist()

    def get_array(self, seq_id: Hashable) -> Any:
        """The sequence's values as a new array of shape ``(T, *token_shape)`` (a tensor
        on the pool's device for a torch pool). O(T)."""
        return self._values(self._seq(seq_id))

    def stats(self) -> dict[str, Any]:
        """Counters and page accounting. O(max_pages).

        Keys: ``page_size``, ``max_pages``, ``num_sequences``, ``total_tokens``;
        pages: ``used_pages`` (referenced), ``cached_pages`` (unreferenced but
        reusable), ``free_pages`` (neither), ``shared_pages`` (two or more
        holders), ``total_page_refs`` (block-table entries), ``pages_saved_by_sharing``
        (``total_page_refs - used_pages``: pages that would be needed without
        sharing); prefix reuse: ``prefix_queried_tokens``, ``prefix_hit_tokens``,
        ``prefix_hit_rate`` (hit / queried, 0.0 before any query),
        ``remote_hit_tokens`` (the part of the hits fetched from ``remote``); ``cow_copies``,
        ``evictions``; ``utilisation`` (used / max_pages) and ``bytes_per_page``.
        """
        holders = self._pages.holders
        used = sum(1 for c in holders if c)
        refs = sum(holders)
        shared = sum(1 for c in holders if c > 1)
        q = self._queried_tokens
        return {
            "page_size": self._page_size,
            "max_pages": self.max_pages,
            "num_sequences": len(self._seqs),
            "total_tokens": sum(s.num_tokens for s in self._seqs.values()),
            "used_pages": used,
            "cached_pages": len(self._pages.evictable),
            "free_pages": self._pages.alloc.num_free,
            "shared_pages": shared,
            "total_page_refs": refs,
            "pages_saved_by_sharing": refs - used,
            "prefix_queried_tokens": q,
            "prefix_hit_tokens": self._hit_tokens,
            "prefix_hit_rate": self._hit_tokens / q if q else 0.0,
            "remote_hit_tokens": 0 if self._remote is None else self._remote.hit_tokens,
            "cow_copies": self._cow_copies,
            "evictions": self._pages.evictions,
            "utilisation": used / self.max_pages,
            "bytes_per_page": int(self.pool[0].nbytes),
        }

    # -------------------------------------------------------- beyond the seed
    def append(self, seq_id: Hashable, kv: Any) -> None:
        """Append one token's value (or ``(k, *token_shape)`` values). O(k) amortised.

        Copies the last page first when it is partial and shared (copy-on-write).
        Raises :class:`~llmds.errors.CapacityError` when out of pages.
        """
        seq = self._seq(seq_id)
        data = self._coerce_values(kv, "kv", None)
        k = data.shape[0]
        if k == 0:
            return
        cow = self._grow(seq, k)
        self._write(seq.pages, seq.num_tokens, data)
        seq.num_tokens += k
        seq.tracked = False  # the values' token ids are unknown
        self._cow_copies += cow

    def fork(self, parent_id: Hashable, child_id: Hashable) -> None:
        """Make ``child_id`` share all of ``parent_id``'s pages (no copy). O(P).

        The first write to a shared partial page copies it (copy-on-write).
        """
        parent = self._seq(parent_id, "parent_id")
        self._require_new(child_id, "child_id")
        child = _Seq(list(parent.pages), parent.num_tokens, parent.extra_key)
        child.tracked = parent.tracked
        child.last_hash = parent.last_hash
        child.tail = parent.tail
        self._pages.share(child.pages)
        self._seqs[child_id] = child

    def block_table(self, seq_id: Hashable) -> npt.NDArray[np.int32]:
        """The sequence's page ids in order, as an int32 array. O(P)."""
        return np.array(self._seq(seq_id).pages, dtype=np.int32)

    def block_ids(self, seq_id: Hashable, start: int = 0) -> list[int]:
        """The sequence's page ids from block ``start`` on, as a new list. O(P).

        :meth:`block_table` as Python ints, for callers that want a list (vLLM's
        scheduler reads block ids as lists): ~0.3 us where building the array and
        converting it back costs ~3 us for a 60-page table.
        """
        if type(start) is not int or start < 0:
            start = check_int(start, "start", minimum=0)
        return self._seq(seq_id).pages[start:]

    def num_tokens(self, seq_id: Hashable) -> int:
        """Tokens stored for ``seq_id``. O(1)."""
        return self._seq(seq_id).num_tokens

    def evict(self, num_pages: int | None = None) -> int:
        """Drop up to ``num_pages`` cached unreferenced pages (all if ``None``). O(1) each.

        Returns how many were dropped, least recently used first.
        """
        available = len(self._pages.evictable)
        if num_pages is not None:
            available = min(available, check_int(num_pages, "num_pages", minimum=0))
        k = available
        if k:
            self._pages.evict(k)
        return k

    # -------------------------------------------------------------- helpers
    def _seq(self, seq_id: Hashable, name: str = "seq_id") -> _Seq:
        try:
            return self._seqs[seq_id]
        except KeyError:
            raise UnknownSequenceError(f"unknown {name} {seq_id!r}") from None
        except TypeError:
            raise TypeError(f"{name} must be hashable, got {show(seq_id)}") from None

    def _require_new(self, seq_id: Hashable, name: str) -> None:
        try:
            live = seq_id in self._seqs
        except TypeError:
            raise TypeError(f"{name} must be hashable, got {show(seq_id)}") from None
        if live:
            raise ValueError(f"{name} {seq_id!r} is already attached; detach it first")

    def _coerce_values(self, values: Any, name: str, many: bool | None) -> Any:
        """``values`` in the pool's dtype (and device), shape ``(k, *token_shape)``."""
        if isinstance(self.pool, np.ndarray):
            return coerce_values(values, name, self._dtype, self._token_shape, many)
        return coerce_tensor_values(values, name, self.pool, self._token_shape, many)

    def _values(self, seq: _Seq) -> Any:
        if not seq.pages:
            if not isinstance(self.pool, np.ndarray):
                return self.pool.new_empty((0, *self._token_shape))
            return np.empty((0, *self._token_shape), dtype=self._dtype)
        out = self.pool[seq.pages].reshape(-1, *self._token_shape)
        return out[: seq.num_tokens]

    def _coerce_tokens(self, tokens: Any, name: str) -> npt.NDArray[np.uint32]:
        """Token ids as a 1-D uint32 array in ``[0, vocab_size or 2**32)``. O(T)."""
        return page_hash.token_array(tokens, vocab_size=self._vocab_size, name=name)

    def _grow(self, seq: _Seq, k: int) -> int:
        """Make room for ``k`` more tokens (COW of a shared partial last page).

        Returns 1 if a page was copied. Raises CapacityError, changing nothing.
        """
        ps = self._page_size
        fill = seq.num_tokens % ps
        cow = fill > 0 and self._pages.holders[seq.pages[-1]] > 1
        room = ps - fill if fill else 0
        num_new = -(-max(0, k - room) // ps) + (1 if cow else 0)
        self._pages.reserve(num_new, [], self.max_pages)
        fresh = self._pages.obtain(num_new)
        if cow:
            old = seq.pages[-1]
            page = fresh.pop()
            self.pool[page, :fill] = self.pool[old, :fill]
            self._pages.drop(old)  # still >= 1: someone else holds it
            seq.pages[-1] = page
        seq.pages.extend(fresh)
        return 1 if cow else 0

    def _write(self, pages: list[int], start: int, data: npt.NDArray[Any]) -> None:
        ps, pool = self._page_size, self.pool
        pos, done, k = start, 0, data.shape[0]
        while done < k:
            page, off = divmod(pos, ps)
            take = min(ps - off, k - done)
            pool[pages[page], off : off + take] = data[done : done + take]
            done += take
            pos += take

    def _check(self) -> None:
        """Assert the invariants. O(max_pages + total pages); tests only."""
        ps = self._page_size
        held = [0] * self.max_pages
        for seq in self._seqs.values():
            assert len(seq.pages) == -(-seq.num_tokens // ps), "block table length"
            for page in seq.pages:
                held[page] += 1
            if seq.tracked:
                assert seq.tail.shape[0] == seq.num_tokens % ps, "tail length"
        self._pages.check(held)
        if self._remote is not None:
            self._remote.check(self._pages.holders, self._pages.page_key)
        sha = self._pages.algorithm == "sha256"
        for seq in self._seqs.values():
            if seq.num_tokens % ps:
                assert not self._pages.is_cached(seq.pages[-1]), "a partial page is hashed"
            if seq.tracked and sha:
                assert isinstance(seq.last_hash, bytes), "chain value of a tracked sequence"
                assert len(seq.last_hash) == page_hash.DIGEST_SIZE

    def __repr__(self) -> str:
        return (
            f"KVCache(page_size={self._page_size}, max_pages={self.max_pages}, "
            f"enable_prefix_sharing={self._sharing}, sequences={len(self._seqs)})"
        )
