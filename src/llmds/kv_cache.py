"""Paged KV cache with hash-chain prefix sharing, copy-on-write and LRU reuse."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from llmds._kernels import kv as _kv
from llmds.errors import CapacityError, UnknownSequenceError
from llmds.paged_allocator import PagedAllocator

__all__ = ["KVCache"]

_HASH_ALGORITHMS = ("chain64", "sha256")


class _Seq:
    """One sequence: its block table plus what is needed to keep hashing it."""

    __slots__ = ("extra_key", "last_hash", "num_tokens", "pages", "tail", "tracked")

    def __init__(self, pages: list[int], num_tokens: int, extra_key: Hashable | None) -> None:
        self.pages = pages
        self.num_tokens = num_tokens
        self.extra_key = extra_key
        # Token-level sequences (``allocate``) know every token id, so newly
        # filled pages can be hashed and cached: ``last_hash`` is the hash of the
        # last full page (or the namespace seed) and ``tail`` the token ids of
        # the partial last page. ``attach``/``append`` sequences store values
        # whose token ids are unknown, so they are not tracked.
        self.tracked = False
        self.last_hash: Any = None
        self.tail: npt.NDArray[np.uint64] = np.empty(0, dtype=np.uint64)


class KVCache:
    """Paged KV cache over a preallocated NumPy page pool, with prefix sharing.

    The payload lives in ``pool``, an array of shape ``(max_pages, page_size,
    *token_shape)`` and dtype ``dtype``; a sequence is a *block table* (a list
    of page ids, :meth:`block_table`) plus its token count. The default stores
    one ``float64`` scalar per token, so the seed examples (``kv_tokens`` a list
    of numbers) run as written; ``get`` returns Python floats, which compare
    equal to the ints written. The pool is made with ``np.zeros``, whose memory
    the OS maps lazily: the defaults reserve 10000 * 512 * 8 B = 41 MB of
    address space but RSS grows only with the pages actually written.

    **Prefix sharing** (``enable_prefix_sharing=True``). Every *full* page whose
    token ids are known (the pages covered by ``prefix_tokens`` in
    :meth:`attach`, every full page of a token-level sequence from
    :meth:`allocate`/:meth:`append_tokens`) is identified by a chained hash
    ``H(parent_hash, page_token_ids)`` whose first parent is a seed derived from
    the namespace ``extra_key`` (tenant, LoRA id), so different namespaces never
    share. Two sequences whose prefixes hash alike share the page and its
    reference count goes up. A partial page is never shared through the hash
    table; it is shared only by :meth:`fork`, under copy-on-write. The default
    hash, ``"chain64"``, is a stable 64-bit xxHash-style chain computed in a
    numba kernel (:mod:`llmds._kernels.kv`; collision odds about
    ``n**2 / 2**65`` for ``n`` cached pages); ``hash_algorithm="sha256"`` chains
    SHA-256 digests instead (``sha256(parent_digest + int64 LE token bytes)``),
    as vLLM does by default, at a higher cost per page.

    **Copy-on-write.** A page with more than one holder is never written: an
    :meth:`attach` whose values differ from the cached page with the same hash
    gets a private page, and :meth:`append`/:meth:`append_tokens` on a sequence
    whose last, partial page is shared (after :meth:`fork`) first copies it.
    Both count as ``cow_copies`` in :meth:`stats`.

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

    Invariants (asserted by :meth:`_check`): each page's reference count equals
    the number of block-table entries naming it; a page is exactly one of free
    (on the allocator's free list), referenced (count >= 1) or cached (count 0,
    hashed, in the LRU list); the hash table and each page's hash agree; no
    partial page is hashed.

    Complexity (P = pages touched, T = tokens): ``attach`` O(T) (plus one
    equality check per shared page), ``get`` O(T), ``detach`` O(P),
    ``append`` O(T) amortised, ``fork`` O(P), ``block_table`` O(P),
    ``allocate``/``append_tokens`` O(T) hashing + O(P) dictionary work,
    ``evict`` O(1) per page, ``stats`` O(max_pages). Memory: the pool, plus
    O(1) Python objects per page and per sequence.

    >>> cache = KVCache(page_size=4, max_pages=8)
    >>> cache.attach(1, [1, 2, 3, 4, 5], prefix_tokens=[1, 2, 3, 4])
    >>> cache.attach(2, [1, 2, 3, 4, 9], prefix_tokens=[1, 2, 3, 4])
    >>> cache.block_table(1).tolist(), cache.block_table(2).tolist()
    ([0, 1], [0, 2])
    >>> cache.get(2)
    [1.0, 2.0, 3.0, 4.0, 9.0]
    """

    __slots__ = (
        "_alloc",
        "_cow_copies",
        "_dtype",
        "_evictable",
        "_evictions",
        "_hash_algorithm",
        "_hit_tokens",
        "_page_hash",
        "_page_size",
        "_queried_tokens",
        "_ref",
        "_seeds",
        "_seqs",
        "_sharing",
        "_table",
        "_token_shape",
        "pool",
    )

    def __init__(
        self,
        page_size: int = 512,
        max_pages: int = 10000,
        enable_prefix_sharing: bool = True,
        *,
        token_shape: tuple[int, ...] = (),
        dtype: npt.DTypeLike = np.float64,
        hash_algorithm: str = "chain64",
    ) -> None:
        if isinstance(page_size, bool) or not isinstance(page_size, int) or page_size <= 0:
            raise ValueError(f"page_size must be a positive int, got {page_size!r}")
        if isinstance(max_pages, bool) or not isinstance(max_pages, int) or max_pages <= 0:
            raise ValueError(f"max_pages must be a positive int, got {max_pages!r}")
        shape = tuple(token_shape)
        if any(isinstance(d, bool) or not isinstance(d, int) or d <= 0 for d in shape):
            raise ValueError(f"token_shape must be positive ints, got {token_shape!r}")
        if hash_algorithm not in _HASH_ALGORITHMS:
            raise ValueError(
                f"hash_algorithm must be one of {_HASH_ALGORITHMS}, got {hash_algorithm!r}"
            )
        self._page_size = page_size
        self._token_shape = shape
        self._dtype = np.dtype(dtype)
        self._sharing = bool(enable_prefix_sharing)
        self._hash_algorithm = hash_algorithm
        # np.zeros: the OS maps these pages lazily (zero pages until written).
        self.pool = np.zeros((max_pages, page_size, *shape), dtype=self._dtype)
        self._alloc = PagedAllocator(max_pages)
        self._ref: list[int] = [0] * max_pages  # block-table entries naming each page
        self._page_hash: list[Any] = [None] * max_pages
        self._table: dict[Any, int] = {}  # chained page hash -> page id
        self._evictable: OrderedDict[int, None] = OrderedDict()  # LRU first
        self._seqs: dict[Hashable, _Seq] = {}
        self._seeds: dict[Any, Any] = {}
        self._queried_tokens = 0
        self._hit_tokens = 0
        self._cow_copies = 0
        self._evictions = 0

    # ----------------------------------------------------------- properties
    @property
    def page_size(self) -> int:
        """Tokens per page. O(1)."""
        return self._page_size

    @property
    def max_pages(self) -> int:
        """Pages in the pool. O(1)."""
        return self._alloc.num_pages

    @property
    def num_free_pages(self) -> int:
        """Pages available to new sequences: free plus cached-unreferenced. O(1)."""
        return self._alloc.num_free + len(self._evictable)

    def can_allocate(self, num_tokens: int) -> bool:
        """True if a new sequence of ``num_tokens`` tokens fits, even with no cache hit. O(1)."""
        if isinstance(num_tokens, bool) or not isinstance(num_tokens, int) or num_tokens < 0:
            raise ValueError(f"num_tokens must be an int >= 0, got {num_tokens!r}")
        return -(-num_tokens // self._page_size) <= self.num_free_pages

    def __len__(self) -> int:
        """Number of live sequences. O(1)."""
        return len(self._seqs)

    def __contains__(self, seq_id: object) -> bool:
        """True if ``seq_id`` is a live sequence. O(1)."""
        return seq_id in self._seqs

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
        data = self._coerce_values(kv_tokens, "kv_tokens", many=True)
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
        register: dict[int, Any] = {}
        cow = 0
        if prefix is not None and self._sharing:
            full = prefix.shape[0] // ps
            hashes = self._chain(prefix, full, self._seed(extra_key))
            table, pool = self._table, self.pool
            for i, h in enumerate(hashes):
                page = table.get(h)
                if page is None:
                    register[i] = h
                elif np.array_equal(pool[page], data[i * ps : (i + 1) * ps]):
                    slots[i] = page
                else:
                    cow += 1  # writing other values into a shared page: private copy
        hits = [p for p in slots if p is not None]
        self._reserve(num_pages - len(hits), hits)
        # ---- nothing below raises: mutate
        self._acquire(hits)
        fresh = self._obtain(num_pages - len(hits))
        it = iter(fresh)
        pages = [p if p is not None else next(it) for p in slots]
        pool = self.pool
        for i, page in enumerate(pages):
            if slots[i] is None:
                chunk = data[i * ps : (i + 1) * ps]
                pool[page, : chunk.shape[0]] = chunk
        table, page_hash = self._table, self._page_hash
        for i, h in register.items():
            if h not in table:
                table[h] = pages[i]
                page_hash[pages[i]] = h
        self._seqs[seq_id] = _Seq(pages, n, extra_key)
        if prefix is not None and self._sharing:
            self._queried_tokens += prefix.shape[0]
            self._hit_tokens += len(hits) * ps
        self._cow_copies += cow

    def detach(self, seq_id: Hashable) -> None:
        """Release sequence ``seq_id``; its hashed pages stay cached. O(P).

        Raises :class:`~llmds.errors.UnknownSequenceError` for an unknown id.
        """
        seq = self._seqs.pop(seq_id, None)
        if seq is None:
            raise UnknownSequenceError(f"unknown seq_id {seq_id!r}")
        self._release(seq.pages)

    def free(self, seq_id: Hashable) -> None:
        """Alias of :meth:`detach` in the vLLM vocabulary. O(P)."""
        self.detach(seq_id)

    def get(self, seq_id: Hashable) -> list[Any] | None:
        """A deep copy of the sequence's values, or ``None`` if unknown. O(T).

        Returns a list of Python scalars (``token_shape == ()``) or of nested
        lists, one per token; changing it never touches the cache.
        """
        seq = self._seqs.get(seq_id)
        if seq is None:
            return None
        return self._values(seq).tolist()

    def get_array(self, seq_id: Hashable) -> npt.NDArray[Any]:
        """The sequence's values as a new array of shape ``(T, *token_shape)``. O(T)."""
        return self._values(self._seq(seq_id))

    def stats(self) -> dict[str, Any]:
        """Counters and page accounting. O(max_pages).

        Keys: ``page_size``, ``max_pages``, ``num_sequences``, ``total_tokens``;
        pages: ``used_pages`` (referenced), ``cached_pages`` (unreferenced but
        reusable), ``free_pages`` (neither), ``shared_pages`` (two or more
        holders), ``total_page_refs`` (block-table entries), ``pages_saved_by_sharing``
        (``total_page_refs - used_pages``: pages that would be needed without
        sharing); prefix reuse: ``prefix_queried_tokens``, ``prefix_hit_tokens``,
        ``prefix_hit_rate`` (hit / queried, 0.0 before any query); ``cow_copies``,
        ``evictions``; ``utilisation`` (used / max_pages) and ``bytes_per_page``.
        """
        ref = self._ref
        used = sum(1 for c in ref if c)
        refs = sum(ref)
        shared = sum(1 for c in ref if c > 1)
        q = self._queried_tokens
        return {
            "page_size": self._page_size,
            "max_pages": self.max_pages,
            "num_sequences": len(self._seqs),
            "total_tokens": sum(s.num_tokens for s in self._seqs.values()),
            "used_pages": used,
            "cached_pages": len(self._evictable),
            "free_pages": self._alloc.num_free,
            "shared_pages": shared,
            "total_page_refs": refs,
            "pages_saved_by_sharing": refs - used,
            "prefix_queried_tokens": q,
            "prefix_hit_tokens": self._hit_tokens,
            "prefix_hit_rate": self._hit_tokens / q if q else 0.0,
            "cow_copies": self._cow_copies,
            "evictions": self._evictions,
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
        data = self._coerce_values(kv, "kv", many=None)
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
        parent = self._seq(parent_id)
        self._require_new(child_id, "child_id")
        child = _Seq(list(parent.pages), parent.num_tokens, parent.extra_key)
        child.tracked = parent.tracked
        child.last_hash = parent.last_hash
        child.tail = parent.tail
        ref = self._ref
        for page in child.pages:
            ref[page] += 1
        self._seqs[child_id] = child

    def block_table(self, seq_id: Hashable) -> npt.NDArray[np.int32]:
        """The sequence's page ids in order, as an int32 array. O(P)."""
        return np.array(self._seq(seq_id).pages, dtype=np.int32)

    def num_tokens(self, seq_id: Hashable) -> int:
        """Tokens stored for ``seq_id``. O(1)."""
        return self._seq(seq_id).num_tokens

    def allocate(
        self,
        seq_id: Hashable,
        token_ids: Sequence[int] | npt.ArrayLike,
        extra_key: Hashable | None = None,
    ) -> int:
        """Give a new sequence pages for ``token_ids``; return the cached-token count.

        Token-level path (vLLM's ``get_computed_blocks`` + ``allocate_slots``):
        the longest run of leading full pages whose chained hashes are cached
        is reused (reference counted, no copy) and the returned number of
        tokens (a multiple of ``page_size``) need not be recomputed; fresh
        pages cover the rest, and their full pages are cached at once (the
        caller writes their KV through :meth:`block_table`). O(T + P).
        Raises :class:`~llmds.errors.CapacityError` when the pages do not fit.
        """
        self._require_new(seq_id, "seq_id")
        tokens = self._coerce_tokens(token_ids, "token_ids")
        ps = self._page_size
        n = tokens.shape[0]
        num_pages = -(-n // ps)
        full = n // ps
        seed = self._seed(extra_key)
        hits: list[int] = []
        hashes: list[Any] = []
        if self._sharing:
            hashes = self._chain(tokens, full, seed)
            table_get = self._table.get
            for h in hashes:
                page = table_get(h)
                if page is None:
                    break
                hits.append(page)
        num_hit = len(hits)
        self._reserve(num_pages - num_hit, hits)
        # ---- nothing below raises: mutate
        self._acquire(hits)
        pages = hits + self._obtain(num_pages - num_hit)
        if self._sharing:
            self._register(pages, hashes, num_hit)
        seq = _Seq(pages, n, extra_key)
        seq.tracked = True
        seq.last_hash = hashes[-1] if hashes else seed
        seq.tail = tokens[full * ps :]
        self._seqs[seq_id] = seq
        self._queried_tokens += n
        self._hit_tokens += num_hit * ps
        return num_hit * ps

    def append_tokens(self, seq_id: Hashable, token_ids: Sequence[int] | npt.ArrayLike) -> None:
        """Extend a token-level sequence by ``token_ids`` (decode steps). O(k + P).

        Newly filled pages are hashed and cached; a shared partial last page is
        copied first (copy-on-write). Raises ``ValueError`` for a sequence made
        by :meth:`attach` or extended by :meth:`append` (its token ids are
        unknown) and :class:`~llmds.errors.CapacityError` when out of pages.
        """
        seq = self._seq(seq_id)
        if not seq.tracked:
            raise ValueError(
                f"seq_id {seq_id!r} was not created by allocate() (or was extended by "
                "append()), so its token ids are unknown; use append()"
            )
        tokens = self._coerce_tokens(token_ids, "token_ids")
        k = tokens.shape[0]
        if k == 0:
            return
        ps = self._page_size
        first = seq.num_tokens // ps  # index of the page that receives token 0
        cow = self._grow(seq, k)
        combined = np.concatenate((seq.tail, tokens)) if seq.tail.shape[0] else tokens
        full = combined.shape[0] // ps
        if self._sharing and full:
            hashes = self._chain(combined, full, seq.last_hash)
            self._register(seq.pages[first : first + full], hashes, 0)
            seq.last_hash = hashes[-1]
        seq.tail = combined[full * ps :]
        seq.num_tokens += k
        self._cow_copies += cow

    def evict(self, num_pages: int | None = None) -> int:
        """Drop up to ``num_pages`` cached unreferenced pages (all if ``None``). O(1) each.

        Returns how many were dropped, least recently used first.
        """
        if num_pages is None:
            num_pages = len(self._evictable)
        elif isinstance(num_pages, bool) or not isinstance(num_pages, int) or num_pages < 0:
            raise ValueError(f"num_pages must be an int >= 0, got {num_pages!r}")
        k = min(num_pages, len(self._evictable))
        if k:
            self._evict(k)
        return k

    # -------------------------------------------------------------- helpers
    def _seq(self, seq_id: Hashable) -> _Seq:
        try:
            return self._seqs[seq_id]
        except KeyError:
            raise UnknownSequenceError(f"unknown seq_id {seq_id!r}") from None
        except TypeError:
            raise TypeError(f"seq_id must be hashable, got {seq_id!r}") from None

    def _require_new(self, seq_id: Hashable, name: str) -> None:
        try:
            live = seq_id in self._seqs
        except TypeError:
            raise TypeError(f"{name} must be hashable, got {seq_id!r}") from None
        if live:
            raise ValueError(f"{name} {seq_id!r} is already attached; detach it first")

    def _values(self, seq: _Seq) -> npt.NDArray[Any]:
        if not seq.pages:
            return np.empty((0, *self._token_shape), dtype=self._dtype)
        out = self.pool[seq.pages].reshape(-1, *self._token_shape)
        return out[: seq.num_tokens]

    def _coerce_values(self, values: Any, name: str, many: bool | None) -> npt.NDArray[Any]:
        """Values as ``(k, *token_shape)``; ``many=None`` also accepts one token."""
        try:
            arr = np.asarray(values, dtype=self._dtype)
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"{name} must be numbers convertible to {self._dtype}, got {exc}"
            ) from None
        tshape = self._token_shape
        if many is None and arr.ndim == len(tshape):
            arr = arr.reshape(1, *tshape)
        if arr.ndim != len(tshape) + 1 or arr.shape[1:] != tshape:
            raise ValueError(f"{name} must have shape (num_tokens, *{tshape}), got {arr.shape}")
        return arr

    @staticmethod
    def _coerce_tokens(tokens: Any, name: str) -> npt.NDArray[np.uint64]:
        """Token ids as a 1-D uint64 array (negative ids wrap, as int64 bits)."""
        arr = np.asarray(tokens)
        if arr.ndim != 1:
            raise ValueError(f"{name} must be a 1-D sequence of token ids, got shape {arr.shape}")
        if arr.size == 0:
            return np.empty(0, dtype=np.uint64)
        if arr.dtype.kind not in "iu":
            raise TypeError(f"{name} must hold integer token ids, got dtype {arr.dtype}")
        if arr.dtype == np.uint64:
            return arr
        return arr.astype(np.int64, copy=False).view(np.uint64)

    def _seed(self, extra_key: Hashable | None) -> Any:
        """The chain's root for namespace ``extra_key`` (stable across processes)."""
        seeds = self._seeds
        try:
            return seeds[extra_key]
        except KeyError:
            pass
        except TypeError:
            raise TypeError(f"extra_key must be hashable, got {extra_key!r}") from None
        tag = b"llmds-kv:" + (b"" if extra_key is None else repr(extra_key).encode())
        digest = hashlib.sha256(tag).digest()
        seed = digest if self._hash_algorithm == "sha256" else int.from_bytes(digest[:8], "little")
        seeds[extra_key] = seed
        return seed

    def _chain(self, tokens: npt.NDArray[np.uint64], num_pages: int, parent: Any) -> list[Any]:
        """Chained hashes of the first ``num_pages`` full pages of ``tokens``."""
        if num_pages == 0:
            return []
        ps = self._page_size
        if self._hash_algorithm == "chain64":
            with np.errstate(over="ignore"):  # only matters under NUMBA_DISABLE_JIT
                return _kv.chain_hashes(tokens, ps, num_pages, np.uint64(parent)).tolist()
        raw = tokens[: num_pages * ps].astype("<u8", copy=False).tobytes()
        step = 8 * ps
        out: list[Any] = []
        append = out.append
        sha = hashlib.sha256
        # Slicing every page first is ~10% faster per page than slicing inside the loop.
        for page in [raw[i : i + step] for i in range(0, num_pages * step, step)]:
            parent = sha(parent + page).digest()
            append(parent)
        return out

    def _reserve(self, num_new: int, hits: list[int]) -> None:
        """Raise CapacityError unless ``num_new`` pages can be had besides ``hits``."""
        if num_new <= 0:
            return
        ref = self._ref
        reused = sum(1 for p in hits if ref[p] == 0)  # cached pages we are about to pin
        available = self._alloc.num_free + len(self._evictable) - reused
        if num_new > available:
            raise CapacityError(
                f"need {num_new} free pages, {available} available "
                f"({self._alloc.num_free} free + {len(self._evictable) - reused} cached) "
                f"of max_pages={self.max_pages}"
            )

    def _acquire(self, pages: list[int]) -> None:
        ref, evictable = self._ref, self._evictable
        for page in pages:
            if ref[page] == 0:
                del evictable[page]
            ref[page] += 1

    def _obtain(self, n: int) -> list[int]:
        """``n`` fresh pages with refcount 1: free ones first, then LRU evictions."""
        if n <= 0:
            return []
        alloc = self._alloc
        short = n - alloc.num_free
        if short > 0:
            self._evict(short)
        pages = alloc.alloc(n)
        ref = self._ref
        for page in pages:
            ref[page] = 1
        return pages

    def _evict(self, k: int) -> None:
        evictable, table, page_hash = self._evictable, self._table, self._page_hash
        victims = []
        popitem = evictable.popitem
        for _ in range(k):
            page, _none = popitem(last=False)
            del table[page_hash[page]]
            page_hash[page] = None
            victims.append(page)
        self._alloc.free(victims)
        self._evictions += k

    def _release(self, pages: list[int]) -> None:
        ref, page_hash, evictable = self._ref, self._page_hash, self._evictable
        to_free = []
        for page in reversed(pages):  # tail first: a chain is evicted from its end
            count = ref[page] - 1
            ref[page] = count
            if count == 0:
                if page_hash[page] is None:
                    to_free.append(page)
                else:
                    evictable[page] = None
        if to_free:
            self._alloc.free(to_free)

    def _register(self, pages: list[int], hashes: list[Any], start: int) -> None:
        """Cache ``pages[i]`` under ``hashes[i]`` for ``i >= start`` (if not cached yet)."""
        table, page_hash = self._table, self._page_hash
        for i in range(start, len(hashes)):
            h = hashes[i]
            if h not in table:
                page = pages[i]
                table[h] = page
                page_hash[page] = h

    def _grow(self, seq: _Seq, k: int) -> int:
        """Make room for ``k`` more tokens (COW of a shared partial last page).

        Returns 1 if a page was copied. Raises CapacityError, changing nothing.
        """
        ps = self._page_size
        fill = seq.num_tokens % ps
        cow = fill > 0 and self._ref[seq.pages[-1]] > 1
        room = ps - fill if fill else 0
        num_new = -(-max(0, k - room) // ps) + (1 if cow else 0)
        self._reserve(num_new, [])
        fresh = self._obtain(num_new)
        if cow:
            old = seq.pages[-1]
            page = fresh.pop()
            self.pool[page, :fill] = self.pool[old, :fill]
            self._ref[old] -= 1  # still >= 1: someone else holds it
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
        self._alloc._check()
        ps = self._page_size
        counts = [0] * self.max_pages
        for seq in self._seqs.values():
            assert len(seq.pages) == -(-seq.num_tokens // ps), "block table length"
            for page in seq.pages:
                counts[page] += 1
            if seq.tracked:
                assert seq.tail.shape[0] == seq.num_tokens % ps, "tail length"
        assert counts == self._ref, "refcounts differ from block tables"
        free = set(self._alloc._free)
        for page in range(self.max_pages):
            cached = page in self._evictable
            held = counts[page] > 0
            assert (page in free) + cached + held == 1, f"page {page} state"
            if cached:
                assert self._page_hash[page] is not None, "cached page without hash"
        for h, page in self._table.items():
            assert self._page_hash[page] == h, "hash table and page hash disagree"
        assert sum(h is not None for h in self._page_hash) == len(self._table)
        for seq in self._seqs.values():
            if seq.num_tokens % ps:
                assert self._page_hash[seq.pages[-1]] is None, "a partial page is hashed"

    def __repr__(self) -> str:
        return (
            f"KVCache(page_size={self._page_size}, max_pages={self.max_pages}, "
            f"enable_prefix_sharing={self._sharing}, sequences={len(self._seqs)})"
        )
