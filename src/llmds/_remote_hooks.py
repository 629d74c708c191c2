"""How each local cache uses a remote tier (internal to kv_cache.py and radix_cache.py).

:class:`PagedRemote` is :class:`~llmds.kv_cache.KVCache`'s side: its pages are the
remote pages (same page size), their digests are the ones the KVCache already
computes, and it remembers which cached pages still have to be written back.
:class:`RadixRemote` is :class:`~llmds.mem_cache.RadixCache`'s side: the tree holds
KV *indices* into an engine's pool, so the payload is read from and written to a
``kv_buffer`` (rows by slot index), and new slots come from the cache's
``token_to_kv_pool_allocator``. Both name a page by the :mod:`llmds.page_hash` chain
over the store's page size, so the two caches share one store
(:mod:`llmds._remote_tier` has the protocol, failure model and write-back).
"""

from __future__ import annotations

import hashlib
from collections.abc import Hashable
from typing import Any

import numpy as np
import numpy.typing as npt

from llmds import page_hash
from llmds._remote_tier import as_tier
from llmds._validate import show
from llmds.errors import CapacityError
from llmds.mem_cache._keys import key_bytes, namespace
from llmds.mem_cache.base_prefix_cache import MatchResult, RadixKey

__all__ = ["ArrayRows", "PagedRemote", "RadixRemote", "kv_rows"]

_sha256 = hashlib.sha256
_MAX_ROOTS = 4096  # cached namespace roots, as llmds._page_cache


class PagedRemote:
    """A :class:`~llmds.kv_cache.KVCache`'s remote tier and its pages awaiting write-back.

    A page enters ``unsent`` when a token-level sequence registers it
    (:meth:`~llmds.kv_cache.KVCache.allocate`, ``append_tokens``): its KV is written by
    the engine after that call, so it is written back when a sequence holding it is
    released (``detach``/``free``), one batch per sequence. Pages of
    :meth:`~llmds.kv_cache.KVCache.attach` come with their values and are written at
    once; pages fetched from the store are not written back.

    Invariant (``check``): every unsent page is held by a sequence and cached.
    Memory: one set entry per unsent page. Thread safety: guarded by its KVCache.
    """

    __slots__ = ("hit_tokens", "tier", "unsent")

    def __init__(self, remote: Any, *, page_shape: tuple[int, ...], dtype: np.dtype[Any],
                 sharing: bool, algorithm: str) -> None:
        tier = as_tier(remote)
        if not sharing:
            raise ValueError("remote needs enable_prefix_sharing=True: remote pages are found "
                             "by their prefix identity")
        if algorithm != "sha256":
            raise ValueError(f"remote needs hash_algorithm='sha256', got {algorithm!r}: a page "
                             "shared between processes must have a collision-resistant "
                             "identity")
        if tier.page_size != page_shape[0]:
            raise ValueError(f"page_size must equal the remote store's page_size "
                             f"{tier.page_size}, got {page_shape[0]}")
        tier.bind(page_shape, dtype, "KVCache pages")
        self.tier = tier
        self.unsent: set[int] = set()
        self.hit_tokens = 0

    def fetch(self, digests: list[bytes]) -> list[npt.NDArray[Any]]:
        """The stored leading run of the pages named by ``digests``. O(bytes)."""
        return self.tier.fetch(digests) if digests else []

    def fill(self, pool: npt.NDArray[Any], pages: list[int], fetched: list[Any],
             registered: list[int], page_key: list[Any]) -> int:
        """Write ``fetched`` into ``pages`` (their first ``len(fetched)``), then mark the
        rest of ``registered`` (pages just given an identity) unsent. Returns the number
        of pages fetched. O(bytes)."""
        k = len(fetched)
        if k:
            for page, payload in zip(pages, fetched, strict=False):
                pool[page] = payload  # one copy each (pool[pages] = list stacks first)
            tokens = k * pool.shape[1]
            self.hit_tokens += tokens
            self.tier.note_hit_tokens(tokens)
        self.mark(registered[k:], page_key)
        return k

    def mark(self, pages: list[int], page_key: list[Any]) -> None:
        """Pages a sequence just cached whose KV the engine writes later (those that got
        an identity: a page whose identity another page holds is not cached). O(P)."""
        self.unsent.update(p for p in pages if page_key[p] is not None)

    def push(self, pages: list[int], digests: list[bytes], pool: npt.NDArray[Any]) -> None:
        """Write back pages whose values are in the pool already (attach). O(bytes)."""
        if pages:
            self.tier.submit(list(digests), pool[pages])

    def release(self, pages: list[int], pool: npt.NDArray[Any], page_key: list[Any],
                page_digest: list[Any]) -> None:
        """Write back the unsent cached pages among ``pages`` (a sequence being
        released). O(P + bytes)."""
        unsent = self.unsent
        if not unsent:
            return
        send = [p for p in pages if p in unsent]
        if not send:
            return
        unsent.difference_update(send)
        send = [p for p in send if page_key[p] is not None]
        if send:
            self.tier.submit([page_digest[p] for p in send], pool[send])

    def check(self, holders: list[int], page_key: list[Any]) -> None:
        """Assert every unsent page is held and cached. O(unsent); tests only."""
        for page in self.unsent:
            assert holders[page] > 0, f"unsent page {page} is not held"
            assert page_key[page] is not None, f"unsent page {page} is not cached"


class ArrayRows:
    """A NumPy KV buffer read and written by slot index: row ``i`` is slot ``i``'s KV.

    The :class:`~llmds.mem_cache.RadixCache` remote tier reads the rows of a page's
    slots with :meth:`gather` (a copy) and writes fetched rows with :meth:`scatter`.
    An engine whose KV lives elsewhere (per-layer tensors, a GPU) passes its own
    object with the same four members: ``row_shape``, ``dtype``, ``gather(slots) ->
    ndarray (len(slots), *row_shape)`` returning data the engine will not overwrite,
    and ``scatter(slots, rows)``.
    Thread safety: none; guarded by its cache.
    """

    __slots__ = ("buffer",)

    def __init__(self, buffer: npt.NDArray[Any]) -> None:
        if buffer.ndim < 1 or not buffer.flags.writeable:
            raise ValueError(f"kv_buffer must be a writeable array of shape (slots, ...), "
                             f"got shape {buffer.shape}, writeable={buffer.flags.writeable}")
        self.buffer = buffer

    @property
    def row_shape(self) -> tuple[int, ...]:
        return tuple(self.buffer.shape[1:])

    @property
    def dtype(self) -> np.dtype[Any]:
        return self.buffer.dtype

    @property
    def num_rows(self) -> int:
        return int(self.buffer.shape[0])

    def gather(self, slots: npt.NDArray[np.int64]) -> npt.NDArray[Any]:
        return self.buffer[slots]

    def scatter(self, slots: npt.NDArray[np.int64], rows: npt.NDArray[Any]) -> None:
        self.buffer[slots] = rows


def kv_rows(kv_buffer: Any) -> Any:
    """``kv_buffer`` as an object with ``row_shape``, ``dtype``, ``gather``, ``scatter``."""
    if isinstance(kv_buffer, np.ndarray):
        return ArrayRows(kv_buffer)
    missing = [m for m in ("row_shape", "dtype", "gather", "scatter")
               if not hasattr(kv_buffer, m)]
    if missing:
        raise TypeError(f"kv_buffer must be a NumPy array of KV rows by slot index or an "
                        f"object with row_shape, dtype, gather(slots), scatter(slots, rows); "
                        f"got {show(kv_buffer)} (missing {', '.join(missing)})")
    return kv_buffer


class RadixRemote:
    """A :class:`~llmds.mem_cache.RadixCache`'s remote tier (see the module docstring).

    ``match``: the local match, then, when the key has whole remote pages past it,
    the stored run of them is fetched, its rows scattered into new slots (evicting
    unlocked leaves when the pool is short; the matched path is locked meanwhile) and
    inserted into the tree, so the result covers local + remote tokens. ``inserted``:
    after an insert, the remote pages holding new tokens are written back (rows
    gathered from the insert's indices, so the engine's KV must be written before
    ``insert``, as SGLang's cache_finished_req does). The digests of the last key are
    memoised: the insert that follows a match of the same prompt hashes only its new
    pages.

    Memory: the memo (one key's bytes and digests) and up to 4096 namespace roots.
    Thread safety: guarded by its cache.
    """

    __slots__ = ("_loading", "_memo", "_roots", "page_size", "pool", "rows", "tier")

    def __init__(self, remote: Any, kv_buffer: Any, pool: Any, radix_page_size: int) -> None:
        tier = as_tier(remote)
        if kv_buffer is None:
            raise ValueError("remote needs kv_buffer: the cache holds KV indices, the tier "
                             "reads and writes the KV rows at those indices")
        rows = kv_rows(kv_buffer)
        if pool is None or not callable(getattr(pool, "alloc", None)):
            raise TypeError(f"remote needs a token_to_kv_pool_allocator with alloc(n) and "
                            f"free(indices) (fetched pages need slots), got {show(pool)}")
        ps = tier.page_size
        if ps % radix_page_size:
            raise ValueError(f"page_size {radix_page_size} must divide the remote store's "
                             f"page_size {ps} (a remote page is whole radix pages)")
        size = getattr(pool, "size", None)
        num_rows = getattr(rows, "num_rows", None)
        if num_rows is not None and isinstance(size, int) and num_rows < size:
            raise ValueError(f"kv_buffer has {num_rows} rows, fewer than the pool's "
                             f"{size} slots")
        tier.bind((ps, *tuple(rows.row_shape)), np.dtype(rows.dtype), "kv_buffer rows")
        self.tier = tier
        self.rows = rows
        self.pool = pool
        self.page_size = ps
        self._roots: dict[Hashable, bytes] = {}
        self._memo: tuple[Hashable, bytes, list[bytes]] = (object(), b"", [])
        self._loading = False

    # ------------------------------------------------------------ identity
    def digests(self, kb: bytes, extra_key: Any, num_pages: int) -> list[bytes]:
        """The :func:`llmds.page_hash.chain_digests` of the first ``num_pages`` remote
        pages of the token bytes ``kb`` in namespace ``extra_key``. O(new pages)."""
        ns = namespace(extra_key)
        step = 4 * self.page_size
        memo_ns, memo_kb, memo = self._memo
        have = 0
        if memo_ns == ns and type(memo_ns) is type(ns):
            have = min(len(memo), num_pages)
            if kb[: have * step] != memo_kb[: have * step]:
                have = 0
        if have == num_pages:
            return memo[:num_pages]
        out = memo[:have]
        if have:
            parent = out[-1]
        else:
            parent = self._roots.get(ns)  # type: ignore[assignment]
            if parent is None:
                if len(self._roots) >= _MAX_ROOTS:
                    self._roots.clear()
                parent = self._roots[ns] = page_hash.root_digest(self.page_size, extra_key)
        for pos in range(have * step, num_pages * step, step):
            parent = _sha256(parent + kb[pos : pos + step]).digest()
            out.append(parent)
        self._memo = (ns, kb[: num_pages * step], out)
        return out

    # ------------------------------------------------------------ serving
    def match(self, cache: Any, key: Any) -> MatchResult:
        """``cache``'s local match of ``key`` extended by the stored remote pages."""
        r = cache._match_local(key)
        kb, _ = key_bytes(key)
        ps = self.page_size
        m = r.prefix_len
        first, stop = m // ps, (len(kb) >> 2) // ps
        if stop <= first or self.tier.closed:
            return r
        extra = key.extra_key if isinstance(key, RadixKey) else None
        fetched = self.tier.fetch(self.digests(kb, extra, stop)[first:stop])
        if not fetched:
            return r
        end = (first + len(fetched)) * ps
        slots = self._alloc(cache, end - m, r.last_node)
        if slots is None:
            return r
        block = fetched[0] if len(fetched) == 1 else np.concatenate(fetched)
        self.rows.scatter(slots, block[m - first * ps :])
        tokens = np.frombuffer(kb, dtype="<u4")
        self._loading = True
        try:
            cache.insert(RadixKey(tokens[:end], extra), np.concatenate((r.indices, slots)))
        finally:
            self._loading = False
        self.tier.note_hit_tokens(end - m)
        return cache._match_local(key)

    def _alloc(self, cache: Any, n: int, node: Any) -> npt.NDArray[np.int64] | None:
        """``n`` fresh slots, evicting unlocked leaves (never ``node``'s path) when the
        pool is short; None when they cannot be had."""
        pool = self.pool
        free = getattr(pool, "available_size", None)
        free = free() if callable(free) else getattr(pool, "num_free", None)
        if isinstance(free, int) and free < n:
            cache.inc_lock_ref(node)
            try:
                cache.evict(n - free)
            finally:
                cache.dec_lock_ref(node)
        try:
            out = pool.alloc(n)
        except CapacityError:
            return None
        if out is None:  # SGLang's allocators return None when short
            return None
        return np.asarray(out, dtype=np.int64).reshape(-1)

    def inserted(self, key: Any, kb: bytes, pos: int, nb: int,
                 vals: npt.NDArray[np.int64]) -> None:
        """After ``insert``: write back the remote pages that hold tokens ``pos // 4``
        onwards (byte offsets ``pos``..``nb`` of the key were new). O(bytes)."""
        if self._loading:
            return
        ps = self.page_size
        first, stop = (pos >> 2) // ps, (nb >> 2) // ps
        if stop <= first or self.tier.closed:
            return
        extra = key.extra_key if isinstance(key, RadixKey) else None
        digests = self.digests(kb, extra, stop)[first:stop]
        rows = self.rows.gather(vals[first * ps : stop * ps])
        self.tier.submit(digests, np.asarray(rows).reshape(stop - first, ps,
                                                           *tuple(self.rows.row_shape)))
