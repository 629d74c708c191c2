"""vLLM v1's ``KVCacheManager`` interface over :class:`llmds.KVCache`.

``from llmds.integrations.vllm import KVCacheManager`` gives vLLM's constructor
(``KVCacheManager(kv_cache_config, max_model_len, scheduler_block_size,
hash_block_size, enable_caching=True, log_stats=False, ...)``; the config is
duck-typed: ``num_blocks`` and one KV-cache group whose spec has ``block_size``)
and its names and return shapes (vLLM 0.33/0.34): ``get_computed_blocks(request)``
-> ``(KVCacheBlocks, num_computed_tokens, 0)``, ``allocate_slots(request,
num_new_tokens, num_new_computed_tokens, new_computed_blocks, ...)`` ->
``KVCacheBlocks`` or ``None`` when the blocks do not fit, ``free(request)``,
``usage``, ``reset_prefix_cache()``, ``get_num_cached_tokens(request)``,
``get_block_ids(request_id)``, ``get_blocks(request_id)``,
``record_prefix_cache_stats`` / ``make_prefix_cache_stats()``. Requests are
vLLM's own ``Request`` objects or anything with the same fields
(``request_id``, ``all_token_ids``, ``num_tokens``, ``num_computed_tokens``,
``lora_request``, ``cache_salt``); this module never imports vLLM.

**Block identity, as vLLM's.** vLLM names a full block by ``SHA-256(pickle((parent
hash, block token ids, extra keys)))`` chained from ``NONE_HASH =
SHA-256(pickle(seed))`` (seed ``PYTHONHASHSEED`` or ``"vllm-none-hash"``), with the
extra keys ``("lora", name, path)`` on every block and ``("cache_salt", salt)`` on
the first. :func:`hash_block_tokens`, :func:`none_hash` and
:meth:`KVCacheManager.block_hashes` compute exactly these (test vectors computed
with vLLM 0.34 are frozen in the test suite). The pages themselves are found by
:class:`~llmds.KVCache`'s SHA-256 page identity (:mod:`llmds.page_hash`) in the
namespace ``("vllm", lora name, lora path, cache salt)``: the same tokens with the
same LoRA adapter and salt are the same blocks under both identities, so the
same request stream gives the same hits and hit counts as vLLM. vLLM's block
hashes are computed when asked for (:meth:`block_hashes`, ``block.block_hash``),
not on the hot path: a cached block is found without hashing it again.

vLLM's rules kept: the null block (id 0) is reserved, so ``usage`` is
``1 - free / (num_blocks - 1)`` where cached unreferenced blocks count as free;
a hit is capped at ``num_tokens - 1`` tokens (the last token is recomputed for
its logits), so a fully cached prompt recomputes its last block into a fresh
block that is not cached twice; full blocks are cached as soon as their tokens
are known; ``free`` releases a request's blocks tail first, so a chain is evicted
from its end; ``reset_prefix_cache()`` fails (False) while any request holds
blocks.

Remaining differences from vLLM:
  * One KV-cache group of full attention only (no sliding-window, Mamba or
    hybrid groups, no cross-attention: ``num_encoder_tokens`` must be 0);
    ``num_lookahead_tokens`` (speculative decoding) must be 0; multimodal
    features and prompt embeddings raise NotImplementedError.
  * Block ids are equal to vLLM's only until the first block is reused: the free
    list is llmds's (lowest free id first, then most recently freed), not vLLM's
    FIFO queue. Hit counts and block hashes do not depend on ids.
  * ``num_new_computed_tokens`` must be what ``get_computed_blocks`` found (or 0
    to recompute): anything else raises ValueError and changes nothing.
  * ``delay_cache_blocks`` caches anyway (no KV-transfer connector);
    ``num_external_computed_tokens`` are allocated as new tokens; KV events are
    not supported (``take_events()`` returns ``[]``).
  * Blocks are :class:`KVCacheBlock` records made on demand with ``block_id``
    only (``ref_cnt`` 0, ``block_hash`` None: ask :meth:`KVCacheManager.block_hashes`),
    not vLLM's live block objects; the scheduler needs only the ids.

Thread safety: not thread-safe, like vLLM's; guard it with a lock when shared.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from llmds._validate import check_int
from llmds.errors import CapacityError
from llmds.kv_cache import KVCache

__all__ = [
    "DEFAULT_NONE_HASH_SEED",
    "KVCacheBlock",
    "KVCacheBlocks",
    "KVCacheManager",
    "PrefixCacheStats",
    "block_extra_keys",
    "hash_block_tokens",
    "none_hash",
]

DEFAULT_NONE_HASH_SEED = "vllm-none-hash"
_NULL = ("llmds/vllm-null-block",)
_UNBOUNDED = 1 << 62  # "every longer prefix has the same cached pages" (a miss was hit)


def none_hash(seed: str | None = None) -> bytes:
    """vLLM's ``NONE_HASH``, the parent of a request's first block: SHA-256 of the
    pickled seed (``PYTHONHASHSEED`` if set, else ``"vllm-none-hash"``). O(1)."""
    if seed is None:
        seed = os.environ.get("PYTHONHASHSEED", DEFAULT_NONE_HASH_SEED)
    return hashlib.sha256(pickle.dumps(seed, protocol=pickle.HIGHEST_PROTOCOL)).digest()


def hash_block_tokens(parent: bytes | None, token_ids: Sequence[int],
                      extra_keys: tuple[Any, ...] | None = None, *,
                      root: bytes | None = None) -> bytes:
    """vLLM's block hash: ``SHA-256(pickle((parent, tuple(token_ids), extra_keys)))``,
    ``parent`` defaulting to ``root`` (:func:`none_hash`). O(block size).

    >>> hash_block_tokens(None, [1, 2, 3, 4]).hex()[:16]
    '52a7f141c60918f6'
    """
    if not parent:
        parent = root if root is not None else none_hash()
    toks = tuple(int(t) for t in token_ids)
    data = pickle.dumps((parent, toks, extra_keys), protocol=pickle.HIGHEST_PROTOCOL)
    return hashlib.sha256(data).digest()


def block_extra_keys(request: Any, block_index: int) -> tuple[Any, ...] | None:
    """vLLM's extra keys of block ``block_index`` of ``request``: the LoRA adapter's
    ``("lora", name, path)`` on every block, ``("cache_salt", salt)`` on the first.
    Raises NotImplementedError for multimodal inputs or prompt embeddings. O(1)."""
    _check_supported(request)
    keys: list[Any] = []
    lora = getattr(request, "lora_request", None)
    if lora:
        keys.append(("lora", lora.lora_name, lora.lora_path))
    salt = getattr(request, "cache_salt", None)
    if block_index == 0 and salt:
        keys.append(("cache_salt", salt))
    return tuple(keys) if keys else None


def _count(value: Any, name: str) -> int:
    """A token count: a non-negative int (the common case checked inline, ~50 ns)."""
    if type(value) is int and value >= 0:
        return value
    return check_int(value, name, minimum=0)


def _check_supported(request: Any) -> None:
    if getattr(request, "mm_features", None):
        raise NotImplementedError("multimodal requests are not supported by llmds's KVCacheManager")
    if getattr(request, "prompt_embeds", None) is not None:
        raise NotImplementedError("prompt embeddings are not supported by llmds's KVCacheManager")


def _namespace(request: Any) -> Any:
    """The llmds page namespace equivalent to vLLM's extra keys (None when plain)."""
    _check_supported(request)
    lora = getattr(request, "lora_request", None)
    salt = getattr(request, "cache_salt", None)
    if not lora and not salt:
        return None
    return ("vllm", lora.lora_name if lora else None, lora.lora_path if lora else None,
            salt or None)


@dataclass
class KVCacheBlock:
    """A block as vLLM's scheduler sees it: id, holders, vLLM block hash (or None)."""

    block_id: int
    ref_cnt: int = 0
    block_hash: bytes | None = None

    @property
    def is_null(self) -> bool:
        return self.block_id == 0


class KVCacheBlocks:
    """vLLM's allocation result for one KV-cache group: ``get_block_ids()`` ->
    ``([ids],)``; ``blocks`` -> ``([KVCacheBlock, ...],)`` (made on demand). O(n)."""

    __slots__ = ("_ids", "_manager")

    def __init__(self, block_ids: list[int], manager: Any = None) -> None:
        self._ids = block_ids
        self._manager = manager

    def get_block_ids(self, allow_none: bool = False, *,
                      group_ids: Sequence[int] | None = None) -> tuple[list[int], ...] | None:
        if allow_none and not self._ids:
            return None
        return (list(self._ids),)

    @property
    def blocks(self) -> tuple[list[KVCacheBlock], ...]:
        m = self._manager
        return ([m._block(b) if m is not None else KVCacheBlock(b) for b in self._ids],)

    def get_unhashed_block_ids(self) -> list[int]:
        return [b.block_id for b in self.blocks[0] if b.block_hash is None]

    def __add__(self, other: KVCacheBlocks) -> KVCacheBlocks:
        return KVCacheBlocks(self._ids + other._ids, self._manager or other._manager)

    def __len__(self) -> int:
        return len(self._ids)

    def new_empty(self) -> KVCacheBlocks:
        return KVCacheBlocks([], self._manager)

    def __repr__(self) -> str:
        return f"KVCacheBlocks(block_ids={self._ids!r})"


@dataclass
class PrefixCacheStats:
    """vLLM's prefix-cache counters since the last ``make_prefix_cache_stats()``."""

    reset: bool = False
    requests: int = 0
    queries: int = 0
    hits: int = 0
    preempted_requests: int = 0
    preempted_queries: int = 0
    preempted_hits: int = 0

    def record(self, num_tokens: int, num_hits: int, preempted: bool = False) -> None:
        if preempted:
            self.preempted_requests += 1
            self.preempted_queries += num_tokens
            self.preempted_hits += num_hits
        else:
            self.requests += 1
            self.queries += num_tokens
            self.hits += num_hits


def _tokens(request: Any) -> Any:
    """The request's token ids without a copy when they live in an ``array`` (vLLM's
    ``TokenBuffer``); the view is used within one call only (it pins the array). O(1)."""
    toks = request.all_token_ids
    if isinstance(toks, np.ndarray | list):
        return toks
    # vLLM wraps its TokenBuffer (an ``array("i")``) in a read-only ``ConstantList``
    # whose ``_x`` is the buffer: view that instead of iterating (measured: iterating
    # plus np.asarray cost ~50 us per call on a 1,000-token request, the view ~1 us).
    buf = getattr(toks, "_x", toks)
    if isinstance(buf, array):
        return np.frombuffer(buf, dtype=np.dtype(buf.typecode))
    return list(toks)


class KVCacheManager:
    """vLLM v1's KV-cache manager over one :class:`llmds.KVCache` (see the module doc).

    Invariants: every live request id has a KVCache sequence of ``num_tokens``
    tokens (``_check`` asserts KVCache's own invariants and this map); block 0 is
    held by the null sequence. Complexity: ``get_computed_blocks`` O(T) with no
    hashing of cached blocks, ``allocate_slots`` O(new tokens + blocks) with one
    SHA-256 per new full block, ``free`` O(blocks), ``usage`` O(1). Memory: the
    KVCache's page bookkeeping (no KV tensors: the engine owns those), plus one
    small record per running request.

    Thread safety: not thread-safe; guard it with a lock when shared.
    """

    def __init__(self, kv_cache_config: Any = None, max_model_len: int = 1 << 20,
                 scheduler_block_size: int | None = None, hash_block_size: int | None = None,
                 *args: Any, enable_caching: bool = True, use_eagle: bool = False,
                 log_stats: bool = False, enable_kv_cache_events: bool = False,
                 num_blocks: int | None = None, block_size: int | None = None,
                 hash_algorithm: str = "sha256", **kwargs: Any) -> None:
        if args:
            raise TypeError("pass enable_caching, log_stats, ... by keyword")
        if kv_cache_config is not None:
            groups = list(kv_cache_config.kv_cache_groups)
            if len(groups) != 1:
                raise NotImplementedError(f"one KV-cache group is supported, got {len(groups)}")
            spec = groups[0].kv_cache_spec
            if type(spec).__name__ not in ("FullAttentionSpec", "AttentionSpec"):
                raise NotImplementedError(f"only full attention is supported, got "
                                          f"{type(spec).__name__}")
            num_blocks, block_size = kv_cache_config.num_blocks, spec.block_size
        if num_blocks is None or block_size is None:
            raise TypeError("give kv_cache_config, or num_blocks and block_size")
        self.block_size = check_int(block_size, "block_size", minimum=1)
        for name, v in (("scheduler_block_size", scheduler_block_size),
                        ("hash_block_size", hash_block_size)):
            if v is not None and check_int(v, name, minimum=1) != self.block_size:
                raise NotImplementedError(f"{name} must equal the block size "
                                          f"{self.block_size}, got {v}")
        self.num_blocks = check_int(num_blocks, "num_blocks", minimum=2)
        self.max_model_len = check_int(max_model_len, "max_model_len", minimum=1)
        if use_eagle:
            raise NotImplementedError("use_eagle=True is not supported by llmds")
        if enable_kv_cache_events:
            raise NotImplementedError("KV events are not supported by llmds")
        self.enable_caching = bool(enable_caching)
        self.log_stats = bool(log_stats)
        self.enable_kv_cache_events = False
        self.prefix_cache_stats: PrefixCacheStats | None = (
            PrefixCacheStats() if self.log_stats else None)
        self._kv = KVCache(page_size=self.block_size, max_pages=self.num_blocks,
                           enable_prefix_sharing=self.enable_caching,
                           hash_algorithm=hash_algorithm)
        self._kv.attach(_NULL, [0.0])  # the null block: page 0, held forever
        self._reqs: dict[Any, int] = {}  # request id -> tokens KVCache holds for it
        self._root = none_hash()
        self.empty_kv_cache_blocks = KVCacheBlocks([], self)
        self._epoch = 0  # bumped by every change to the KVCache
        self._found: tuple[Any, int, int, int, int] | None = None  # the last lookup
        self.num_queried_tokens = 0  # over the manager's life, for hit rates
        self.num_hit_tokens = 0

    # ----------------------------------------------------------- accounting
    @property
    def usage(self) -> float:
        """Fraction of the non-null blocks in use (cached unreferenced blocks count
        as free). O(1)."""
        return 1.0 - self._kv.num_free_pages / (self.num_blocks - 1)

    def get_num_free_blocks(self) -> int:
        """Blocks a request can get: free plus cached unreferenced. O(1)."""
        return self._kv.num_free_pages

    def make_prefix_cache_stats(self) -> PrefixCacheStats | None:
        """The stats since the last call (and start anew), or None without log_stats."""
        if not self.log_stats:
            return None
        stats = self.prefix_cache_stats
        self.prefix_cache_stats = PrefixCacheStats()
        return stats

    def record_prefix_cache_stats(self, request: Any, num_hits: int) -> None:
        """Count one request's lookup (what vLLM's scheduler calls). O(1)."""
        if self.prefix_cache_stats is None or not self._lookup_enabled(request):
            return
        self.prefix_cache_stats.record(request.num_tokens, num_hits,
                                       getattr(request, "num_preemptions", 0) > 0)

    def take_events(self) -> list[Any]:
        return []

    # -------------------------------------------------------------- lookup
    def _lookup_enabled(self, request: Any) -> bool:
        return self.enable_caching and not getattr(request, "skip_reading_prefix_cache", False)

    def _hit_pages(self, request: Any, bound: int | None) -> tuple[list[int], int]:
        """The leading cached pages of the request (a hit is at most ``num_tokens - 1``
        tokens, and at most ``bound``), and how many leading pages of *any* longer
        prefix are cached for sure: all that were searched if the search ran out of
        pages, unbounded if it stopped at a miss. O(T)."""
        n = request.num_tokens - 1
        if bound is not None:
            n = min(n, bound)
        bs = self.block_size
        searched = max(n, 0) // bs
        if not searched:
            return [], 0
        pages = self._kv.cached_pages(_tokens(request)[: searched * bs], _namespace(request))
        return pages, (searched if len(pages) == searched else _UNBOUNDED)

    def get_computed_blocks(self, request: Any, max_cache_hit_length: int | None = None
                            ) -> tuple[KVCacheBlocks, int, int]:
        """The cached full blocks the request can reuse, its cached token count (at
        most ``num_tokens - 1``) and vLLM's shared-prefix boundary (always 0). O(T)."""
        if not self._lookup_enabled(request):
            return self.empty_kv_cache_blocks, 0, 0
        pages, sure = self._hit_pages(request, max_cache_hit_length)
        hit = len(pages) * self.block_size
        # Remembered for the allocate_slots that follows (vLLM's scheduler calls the two
        # back to back): while the cache is unchanged, allocating the request's first
        # tokens in one KVCache.allocate finds exactly these pages again.
        self._found = (request, request.num_tokens, self._epoch, hit, sure)
        return KVCacheBlocks(pages, self), hit, 0

    def get_num_cached_tokens(self, request: Any) -> int:
        """Tokens of the request already cached, read-only. O(T)."""
        if not self._lookup_enabled(request):
            return 0
        return len(self._hit_pages(request, None)[0]) * self.block_size

    # ---------------------------------------------------------- allocation
    def allocate_slots(self, request: Any, num_new_tokens: int, num_new_computed_tokens: int = 0,
                       new_computed_blocks: KVCacheBlocks | None = None,
                       num_lookahead_tokens: int = 0, num_external_computed_tokens: int = 0,
                       delay_cache_blocks: bool = False, num_encoder_tokens: int = 0,
                       **kwargs: Any) -> KVCacheBlocks | None:
        """Blocks for ``num_new_tokens`` more tokens (after the computed prefix), or
        None when they do not fit (nothing changes). Returns the newly allocated
        blocks. Full blocks are cached as their tokens become known. O(k + P)."""
        if num_lookahead_tokens or num_encoder_tokens:
            raise NotImplementedError("num_lookahead_tokens and num_encoder_tokens must be 0")
        new = _count(num_new_tokens, "num_new_tokens")
        hit = _count(num_new_computed_tokens, "num_new_computed_tokens")
        ext = _count(num_external_computed_tokens, "num_external_computed_tokens")
        rid = request.request_id
        held = self._reqs.get(rid)
        start = request.num_computed_tokens
        bs = self.block_size
        if held is None:
            if start or hit % bs:
                raise ValueError(f"request {rid!r} has no blocks: num_computed_tokens must be 0 "
                                 f"and num_new_computed_tokens whole blocks, got {start}, {hit}")
            total = hit + ext + new
        else:
            total = start + hit + ext + new
        if total > request.num_tokens:
            raise ValueError(f"cannot allocate {total} tokens for request {rid!r}: only "
                             f"{request.num_tokens} token ids are known (speculative tokens "
                             "are not supported)")
        if total > self.max_model_len:
            raise ValueError(f"{total} tokens exceed max_model_len={self.max_model_len}")
        if held is None:
            return self._allocate_new(request, rid, hit, total)
        if total <= held:
            return self.empty_kv_cache_blocks
        try:
            self._kv.append_tokens(rid, _tokens(request)[held:total])
        except CapacityError:
            return None
        self._reqs[rid] = total
        self._epoch += 1
        before = -(-held // bs)
        if -(-total // bs) == before:
            return self.empty_kv_cache_blocks
        return KVCacheBlocks(self._kv.block_ids(rid, before), self)

    def _allocate_new(self, request: Any, rid: Any, hit: int, total: int
                      ) -> KVCacheBlocks | None:
        """The first allocate_slots of a request: ``hit`` cached tokens, ``total`` in all.

        When :meth:`get_computed_blocks` has just found these ``hit`` tokens and nothing
        changed since, one ``KVCache.allocate`` of all ``total`` tokens reuses exactly
        those pages (measured on the 2,000-request chat trace: 20% faster than
        allocating the hit, looking it up again, then appending the rest). O(T + P).
        """
        kv, bs = self._kv, self.block_size
        extra = _namespace(request)
        found, self._found = self._found, None
        whole = (found is not None and found[0] is request and found[2] == self._epoch
                 and found[3] == hit and found[1] == request.num_tokens
                 and total // bs <= found[4])
        toks = _tokens(request)
        try:
            got = kv.allocate(rid, toks[: total if whole else hit], extra)
        except CapacityError:
            return None
        self._epoch += 1
        if got != hit:
            kv.free(rid)
            raise ValueError(f"num_new_computed_tokens={hit} but {got} tokens of request "
                             f"{rid!r} are cached (pass what get_computed_blocks returned)")
        if not whole and total > hit:
            try:
                kv.append_tokens(rid, toks[hit:total])
            except CapacityError:
                kv.free(rid)
                return None
        self._reqs[rid] = total
        self.num_queried_tokens += request.num_tokens
        self.num_hit_tokens += hit
        if -(-total // bs) == hit // bs:
            return self.empty_kv_cache_blocks
        return KVCacheBlocks(kv.block_ids(rid, hit // bs), self)

    def free(self, request: Any) -> None:
        """Release the request's blocks, tail first (cached blocks stay reusable). O(P)."""
        rid = request.request_id
        if self._reqs.pop(rid, None) is not None:
            self._kv.free(rid)
            self._epoch += 1

    def reset_prefix_cache(self) -> bool:
        """Forget every cached block; False (nothing changes) while a request holds
        blocks. O(cached blocks)."""
        if self._reqs:
            return False
        self._kv.evict(None)
        self._epoch += 1
        if self.prefix_cache_stats is not None:
            self.prefix_cache_stats.reset = True
        return True

    # -------------------------------------------------------------- views
    def get_block_ids(self, request_id: Any) -> tuple[list[int], ...]:
        """The request's block table, one list per KV-cache group. O(P)."""
        if request_id not in self._reqs:
            return ([],)
        return (self._kv.block_ids(request_id),)

    def get_blocks(self, request_id: Any) -> KVCacheBlocks:
        return KVCacheBlocks(self.get_block_ids(request_id)[0], self)

    def block_hashes(self, request: Any) -> list[bytes]:
        """vLLM's block hashes of the request's full blocks (as its ``block_hashes``),
        computed from ``all_token_ids`` and the request's extra keys. O(T)."""
        toks = [int(t) for t in _tokens(request)]
        bs = self.block_size
        out: list[bytes] = []
        parent: bytes | None = None
        for i in range(len(toks) // bs):
            parent = hash_block_tokens(parent, toks[i * bs : (i + 1) * bs],
                                       block_extra_keys(request, i), root=self._root)
            out.append(parent)
        return out

    def _block(self, block_id: int) -> KVCacheBlock:
        return KVCacheBlock(block_id)

    def _check(self) -> None:
        """Assert KVCache's invariants and the request map (tests only). O(pages)."""
        self._kv._check()
        assert self._kv.block_table(_NULL).tolist() == [0], "the null block"
        assert len(self._kv) == len(self._reqs) + 1
        for rid, held in self._reqs.items():
            assert self._kv.num_tokens(rid) == held

    def __repr__(self) -> str:
        return (f"KVCacheManager(num_blocks={self.num_blocks}, block_size={self.block_size}, "
                f"requests={len(self._reqs)}, usage={self.usage:.3f})")

