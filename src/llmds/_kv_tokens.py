"""KVCache's token-level path (vLLM's ``get_computed_blocks`` / ``allocate_slots``): a
sequence described by its token ids, whose full pages get an identity as they fill.

A mixin of :class:`llmds.kv_cache.KVCache` (internal), with the sequence record both
paths share. The methods are documented on KVCache; ``attach``/``append`` (the
value-level path) stay there.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from llmds._page_cache import PageCache
    from llmds._remote_hooks import PagedRemote

__all__ = ["Seq", "TokenPath"]

_EMPTY_TOKENS = np.empty(0, dtype=np.uint32)


class Seq:
    """One sequence: its block table plus what is needed to keep hashing it.

    Thread safety: not thread-safe; its KVCache guards it.
    """

    __slots__ = ("extra_key", "last_hash", "num_tokens", "pages", "tail", "tracked")

    def __init__(self, pages: list[int], num_tokens: int, extra_key: Hashable | None) -> None:
        self.pages = pages
        self.num_tokens = num_tokens
        self.extra_key = extra_key
        # Token-level sequences (``allocate``) know every token id, so newly
        # filled pages can be hashed and cached: ``last_hash`` is the hash of the
        # last full page (or the namespace seed) and ``tail`` the token ids of
        # the partial last page (a copy: never a view of the caller's array).
        # ``attach``/``append`` sequences store values whose token ids are
        # unknown, so they are not tracked.
        self.tracked = False
        self.last_hash: Any = None
        self.tail: npt.NDArray[np.uint32] = _EMPTY_TOKENS


class TokenPath:
    """``allocate`` / ``cached_pages`` / ``append_tokens`` of KVCache (no state of its own).

    Thread safety: as KVCache, not thread-safe.
    """

    if TYPE_CHECKING:  # KVCache's slots and helpers, which these methods use
        pool: Any
        _pages: PageCache
        _page_size: int
        _sharing: bool
        _remote: PagedRemote | None
        _seqs: dict[Hashable, Seq]
        _queried_tokens: int
        _hit_tokens: int
        _cow_copies: int

        @property
        def max_pages(self) -> int: ...
        def _require_new(self, seq_id: Hashable, name: str) -> None: ...
        def _coerce_tokens(self, tokens: Any, name: str) -> npt.NDArray[np.uint32]: ...
        def _seq(self, seq_id: Hashable, name: str = "seq_id") -> Seq: ...
        def _grow(self, seq: Seq, k: int) -> int: ...
    else:
        __slots__ = ()

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
        pages = self._pages
        seed = pages.seed(extra_key)
        ps = self._page_size
        n = tokens.shape[0]
        num_pages = -(-n // ps)
        full = n // ps
        hits: list[int] = []
        keys: list[Any] = []
        digests: list[Any] = []
        last = seed
        if self._sharing:
            hits, keys, digests, last = pages.lookup(  # type: ignore[assignment]
                tokens, full, seed, leading=True
            )
        num_hit = len(hits)
        pages.reserve(num_pages - num_hit, hits, self.max_pages)
        remote = self._remote
        fetched = remote.fetch(digests) if remote is not None else []  # never raises
        # ---- nothing below raises: mutate
        pages.acquire(hits)
        table = hits + pages.obtain(num_pages - num_hit)
        if keys:
            pages.register(table[num_hit:], keys, digests)
        if remote is not None:
            num_hit += remote.fill(self.pool, table[num_hit:], fetched,
                                   table[num_hit : num_hit + len(keys)], pages.page_key)
        seq = Seq(table, n, extra_key)
        seq.tracked = True
        seq.last_hash = last
        seq.tail = tokens[full * ps :].copy()
        self._seqs[seq_id] = seq
        self._queried_tokens += n
        self._hit_tokens += num_hit * ps
        return num_hit * ps

    def cached_pages(
        self, token_ids: Sequence[int] | npt.ArrayLike, extra_key: Hashable | None = None
    ) -> list[int]:
        """The cached pages a new :meth:`allocate` of ``token_ids`` would reuse: the
        leading full pages whose identities are cached, in order. Read-only: nothing is
        held, hashed beyond the hits, or touched in the LRU (vLLM's
        ``get_num_cached_tokens`` probe). O(T)."""
        tokens = self._coerce_tokens(token_ids, "token_ids")
        if not self._sharing:
            return []
        pages = self._pages
        return pages.leading_hits(tokens, tokens.shape[0] // self._page_size,
                                  pages.seed(extra_key))

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
            keys, digests = self._pages.digests(combined, 0, full, seq.last_hash)
            self._pages.register(seq.pages[first : first + full], keys, digests)
            if self._remote is not None:
                self._remote.mark(seq.pages[first : first + full], self._pages.page_key)
            seq.last_hash = digests[-1]
        seq.tail = combined[full * ps :].copy()  # never a view of the caller's array
        seq.num_tokens += k
        self._cow_copies += cow
