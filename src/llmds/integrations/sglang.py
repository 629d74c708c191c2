"""SGLang's prefix-cache interface over llmds's radix caches: swap the import.

``from llmds.integrations.sglang import RadixCache`` in place of
``from sglang.srt.mem_cache.radix_cache import RadixCache`` gives an object with
SGLang's constructor (``RadixCache(req_to_token_pool, token_to_kv_pool_allocator,
page_size, ...)``, ``RadixCache(params)`` with a ``CacheInitParams``, and
``RadixCache.create_simulated(...)``), its parameter and result objects
(:class:`MatchPrefixParams`, :class:`InsertParams`, :class:`EvictParams`,
:class:`DecLockRefParams`, :class:`MatchResult` with ``device_indices``,
:class:`EvictResult` with ``num_tokens_evicted``/``swa_num_tokens_evicted``/
``mamba_num_evicted``) and its methods (``match_prefix``, ``insert``, ``evict``,
``inc_lock_ref``/``dec_lock_ref``, ``cache_finished_req``,
``cache_unfinished_req``, ``evictable_size``, ``protected_size``, ``total_size``,
``reset``, ``pretty_print``), over :class:`llmds.mem_cache.RadixCache` (and its
sliding-window and Mamba variants, and ``ChunkCache``). Token ids and KV indices
come in as SGLang passes them (torch tensors on the KV pool's device, lists,
``array('q')``); ``device_indices`` goes out as an int64 tensor on the pool's
device (``token_to_kv_pool_allocator.device``, the CPU without one), and evicted
indices reach the allocator's ``free`` as tensors on that device.

The behaviour is SGLang's: page-aligned keys and matches (a key is truncated to
whole pages; the caller frees the unaligned tail), ``extra_key`` namespaces that
never share nodes, a match that ends inside a node splits it, ``insert`` returns
the cached prefix length whose duplicate indices the caller frees, eviction of the
least recently used unlocked leaves (a parent left childless competes by its own
time), and locks that protect a node's whole path. The tree is llmds's (see
:class:`llmds.mem_cache.RadixCache`): every argument is validated before anything
changes and a KV index already held by the tree is refused (it would be freed
twice).

Minimal stand-ins for SGLang's engine objects, for tests and examples without
SGLang: :class:`ReqToTokenPool` (a ``(num_reqs, max_len)`` table of KV indices),
:class:`TokenToKVPoolAllocator` (slots on a device; slot 0 is reserved as in
SGLang) and :class:`Req` (the request fields the caches read).

Remaining differences from SGLang (0.5.x radix-cache interface):
  * Nodes are llmds nodes: ``node.key`` is a uint32 NumPy array and ``node.value``
    an int64 NumPy array on the host (SGLang: a ``RadixKey`` and a device tensor);
    ``node.children`` is keyed by the bytes of the child's first page.
    ``lock_ref``, ``parent``, ``children``, ``id`` and ``evicted`` mean the same.
  * Only ``eviction_policy="lru"``; ``is_eagle=True`` (bigram keys),
    ``enable_kv_cache_events=True`` (KV events) and ``priority != 0`` raise
    NotImplementedError; ``take_events()`` returns ``[]``.
  * ``dec_lock_ref(node)`` releases only a lock taken by ``inc_lock_ref(node)`` on
    that very node (SGLang accepts any node and may drive counts negative); a
    wrong release raises ``ValueError`` and changes nothing.
  * ``inc_lock_ref``/``dec_lock_ref`` return :class:`IncLockRefResult` /
    :class:`DecLockRefResult`, which are also ints equal to ``delta`` (SGLang's
    older integer returns); ``insert(key, value)`` in the older positional form
    returns :class:`InsertResult`, also an int equal to ``prefix_len``.
  * There is no host (HiCache) tier: ``last_host_node`` and ``best_match_node``
    are the device node and every ``host_*`` length is 0. Eviction order among
    leaves last used at the same moment is by node creation (SGLang: by
    ``time.monotonic()`` stamps, which can tie).
  * On CUDA, the tree keeps its indices on the host: a match costs one
    host-to-device copy of the matched indices, an insert one device-to-host copy
    of the new ones (SGLang keeps per-node device tensors and concatenates them
    on the device).
  * SWA: the lock receipt is llmds's boundary id (``swa_uuid_for_lock``); the
    release needs it (``dec_lock_ref(node, receipt.to_dec_params())`` or the
    older ``dec_lock_ref(node, swa_uuid_for_lock)``). ``InsertParams``'s
    ``prev_prefix_len``/``swa_evicted_seqlen`` are not needed: tombstones the
    key passes are restored as :class:`llmds.mem_cache.SWARadixCache` documents.
  * Mamba: the state pool is ``req_to_token_pool.mamba_pool`` (SGLang's
    ``HybridReqToTokenPool``) or ``mamba_pool=``; it needs ``free(indices)``
    (SGLang's) or ``free_track_slot(slot)`` (llmds's :class:`~llmds.mem_cache.MambaPool`).
    ``cache_finished_req``/``cache_unfinished_req`` are the full-KV ones; the
    Mamba state checkpointing of SGLang's scheduler is left to the caller
    (``insert`` with ``mamba_value``).

Thread safety: not thread-safe, like SGLang's; guard a cache with a lock when shared.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from llmds._torch import as_index_format, require_torch
from llmds._validate import check_choice, check_int, is_int, show
from llmds.integrations._sglang_pools import (
    ReqToTokenPool,
    TokenToKVPoolAllocator,
    TreePool,
    TreeStatePool,
    TreeSWAPool,
)
from llmds.integrations._sglang_records import (
    CacheInitParams,
    DecLockRefParams,
    DecLockRefResult,
    EvictParams,
    EvictResult,
    IncLockRefResult,
    InsertParams,
    InsertResult,
    MatchPrefixParams,
    MatchResult,
    RadixKey,
    init_args,
    key_of,
)
from llmds.integrations._sglang_requests import Req, RequestLifecycle
from llmds.mem_cache import chunk_cache as _chunk
from llmds.mem_cache import mamba_radix_cache as _mamba
from llmds.mem_cache import radix_cache as _radix
from llmds.mem_cache import swa_radix_cache as _swa
from llmds.mem_cache.base_prefix_cache import RadixKey as _Key

torch = require_torch("llmds.integrations.sglang")

__all__ = [
    "CacheInitParams",
    "ChunkCache",
    "DecLockRefParams",
    "DecLockRefResult",
    "EvictParams",
    "EvictResult",
    "IncLockRefResult",
    "InsertParams",
    "InsertResult",
    "MambaRadixCache",
    "MatchPrefixParams",
    "MatchResult",
    "RadixCache",
    "RadixKey",
    "Req",
    "ReqToTokenPool",
    "SWARadixCache",
    "TokenToKVPoolAllocator",
]

_Tensor = torch.Tensor
_INT64 = torch.int64


class RadixCache(RequestLifecycle):
    """SGLang's ``RadixCache`` interface over :class:`llmds.mem_cache.RadixCache`.

    Construct as SGLang does (see the module docstring for both forms);
    ``page_size`` tokens per KV page. Sizes are in tokens; ``evictable_size() +
    protected_size() == total_size()`` at all times. Complexity: as
    :class:`llmds.mem_cache.RadixCache` (match/insert O(d + n), locks O(d), evict
    O((k + s) log h)), plus one tensor conversion of the indices per call.

    Thread safety: not thread-safe; guard it with a lock when shared.

    >>> cache = RadixCache.create_simulated(page_size=1)
    >>> cache.insert(InsertParams(key=RadixKey([1, 2, 3]),
    ...                           value=torch.tensor([10, 11, 12]))).prefix_len
    0
    >>> cache.match_prefix(MatchPrefixParams(key=RadixKey([1, 2, 9]))).device_indices
    tensor([10, 11])
    """

    _tree_cls: Any = _radix.RadixCache
    _pool_cls: Any = TreePool

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        a = init_args(args, kwargs)
        extra = set(a) - {"req_to_token_pool", "token_to_kv_pool_allocator", "page_size",
                          "disable", "enable_kv_cache_events", "is_eagle", "eviction_policy",
                          "disable_finished_insert", "sliding_window_size", "mamba_pool",
                          "enable_metrics", "mamba_cache_chunk_size"}
        if extra:
            raise TypeError(f"unexpected argument(s) {sorted(extra)}")
        if a["is_eagle"]:
            raise NotImplementedError("is_eagle=True (bigram keys) is not supported by llmds")
        if a["enable_kv_cache_events"]:
            raise NotImplementedError("enable_kv_cache_events=True is not supported by llmds")
        check_choice(str(a["eviction_policy"]).lower(), "eviction_policy", ("lru",))
        self.page_size = check_int(a["page_size"], "page_size", minimum=1,
                                   maximum=_radix.MAX_PAGE_SIZE)
        self.disable = bool(a["disable"])
        self.disable_finished_insert = bool(a["disable_finished_insert"])
        self.enable_kv_cache_events = False
        self.is_eagle = False
        self.eviction_policy = "lru"
        self.req_to_token_pool = a["req_to_token_pool"]
        alloc = a["token_to_kv_pool_allocator"]
        self.token_to_kv_pool_allocator = alloc
        dev = getattr(alloc, "device", None) if alloc is not None else None
        try:
            self.device = torch.device(dev) if dev is not None else torch.device("cpu")
        except (TypeError, RuntimeError):  # a Mock's attribute, or another non-device
            self.device = torch.device("cpu")
        self._fmt = (self.device, _INT64)
        pool = self._pool_cls(alloc, self.page_size, self.device) if alloc is not None else None
        self._tree = self._make_tree(a, pool)

    def _make_tree(self, a: dict[str, Any], pool: Any) -> Any:
        return self._tree_cls(page_size=self.page_size, token_to_kv_pool_allocator=pool)

    @classmethod
    def create_simulated(cls, disable: bool = False, mock_allocator: Any = None,
                         page_size: int = 1, enable_kv_cache_events: bool = False,
                         **kwargs: Any) -> Any:
        """A cache without a request pool (and with ``mock_allocator``), as SGLang's."""
        return cls(None, mock_allocator, page_size, disable=disable,
                   enable_kv_cache_events=enable_kv_cache_events, **kwargs)

    # ------------------------------------------------------------- sizes
    def evictable_size(self) -> int:
        """Tokens in unlocked nodes. O(1)."""
        return self._tree.evictable_size()

    def protected_size(self) -> int:
        """Tokens in locked nodes. O(1)."""
        return self._tree.protected_size()

    def total_size(self) -> int:
        """All cached tokens. O(1)."""
        return self._tree.total_size()

    def full_evictable_size(self) -> int:
        return self._tree.evictable_size()

    def full_protected_size(self) -> int:
        return self._tree.protected_size()

    def swa_evictable_size(self) -> int:
        return self._tree.swa_evictable_size()

    def swa_protected_size(self) -> int:
        return self._tree.swa_protected_size()

    @property
    def evictable_size_(self) -> int:
        return self._tree.evictable_size()

    @property
    def protected_size_(self) -> int:
        return self._tree.protected_size()

    @property
    def root_node(self) -> Any:
        return self._tree.root_node

    def supports_swa(self) -> bool:
        return False

    def supports_mamba(self) -> bool:
        return False

    def is_chunk_cache(self) -> bool:
        return False

    def take_events(self) -> list[Any]:
        """KV events are not supported: always ``[]``."""
        return []

    # ------------------------------------------------------------- core
    def reset(self) -> None:
        """Drop every node (the indices are not freed: reset the pool too). O(1)."""
        self._tree.reset()

    def _empty(self) -> MatchResult:
        root = self._tree.root_node
        return MatchResult(torch.empty(0, dtype=_INT64, device=self.device), root, root, root)

    def match_prefix(self, params: Any = None, **kwargs: Any) -> MatchResult:
        """Longest cached whole-page prefix of the key; ``device_indices`` on the pool's
        device. O(d + n). Takes :class:`MatchPrefixParams`, a ``RadixKey`` or
        ``key=``."""
        key = key_of(params if params is not None else kwargs.get("key"))
        if self.disable:
            return self._empty()
        r = self._tree.match_prefix(key)
        idx = r.indices
        if not isinstance(idx, _Tensor):
            idx = as_index_format(idx, self._fmt)
        node = r.last_node
        return MatchResult(idx, node, node, node, 0, 0, None, 0, r.mamba_branching_seqlen)

    def insert(self, params: Any = None, value: Any = None, **kwargs: Any) -> InsertResult:
        """Insert key -> KV indices; the result (also an int) is the cached prefix
        length, whose duplicate indices the caller frees. O(d + n)."""
        if isinstance(params, _Key) or params is None or not hasattr(params, "key"):
            key = key_of(params if params is not None else kwargs.pop("key", None))
            p = InsertParams(key=key, value=value, **kwargs)
        else:
            p = params
            key = key_of(p)
        if getattr(p, "priority", 0):
            raise NotImplementedError("priority eviction is not supported by llmds (LRU only)")
        if self.disable:
            return InsertResult(0)
        v = p.value
        if v is None:
            toks = key.token_ids
            v = toks.to(_INT64) if isinstance(toks, _Tensor) else torch.tensor(
                np.asarray(toks, dtype=np.int64))
        r = self._insert(key, v, p)
        return InsertResult(r.prefix_len, len(key), r.last_node, r.mamba_exist)

    def _insert(self, key: Any, value: Any, p: Any) -> Any:
        return self._tree.insert(key, value)

    def evict(self, params: Any = 0) -> EvictResult:
        """Evict least recently used unlocked leaves until ``num_tokens`` are gone.
        Takes :class:`EvictParams` or a token count. O((k + s) log h)."""
        if isinstance(params, EvictParams) or hasattr(params, "num_tokens"):
            n, s, m = params.num_tokens, getattr(params, "swa_num_tokens", 0), getattr(
                params, "mamba_num", 0)
        else:
            n, s, m = params, 0, 0
        if self.disable:
            return EvictResult()
        return self._evict(n, s, m)

    def _evict(self, n: Any, s: Any, m: Any) -> EvictResult:
        r = self._tree.evict(n)
        return EvictResult(num_tokens_evicted=r.full_evicted)

    def inc_lock_ref(self, node: Any) -> IncLockRefResult:
        """Protect ``node``'s path from eviction; the receipt (also an int) is the
        change of ``evictable_size()``. O(d)."""
        if self.disable or node is None:
            return IncLockRefResult(0)
        before = self._tree.evictable_size()
        token = self._tree.inc_lock_ref(node)
        return self._receipt(self._tree.evictable_size() - before, node, token)

    def _receipt(self, delta: int, node: Any, token: Any) -> IncLockRefResult:
        return IncLockRefResult(delta, node_id=node.id)

    def dec_lock_ref(self, node: Any, params: Any = None, **kwargs: Any) -> DecLockRefResult:
        """Release one ``inc_lock_ref(node)``; the result (also an int) is the change
        of ``evictable_size()``. O(d). Raises ValueError for a node not locked."""
        if self.disable or node is None:
            return DecLockRefResult(0)
        before = self._tree.evictable_size()
        self._release(node, params, kwargs)
        return DecLockRefResult(self._tree.evictable_size() - before)

    def _release(self, node: Any, params: Any, kwargs: dict[str, Any]) -> None:
        self._tree.dec_lock_ref(node)

    def all_values_flatten(self) -> Any:
        """Every cached KV index, as a tensor on the pool's device. O(tree)."""
        v = self._tree.all_values_flatten()
        return v if isinstance(v, _Tensor) else as_index_format(v, self._fmt)

    def pretty_print(self) -> None:
        """Print the tree (debugging). O(tree)."""
        self._tree.pretty_print()

    def _check(self) -> None:
        """Assert the tree's invariants (tests only). O(tree)."""
        self._tree._check()

class SWARadixCache(RadixCache):
    """SGLang's ``SWARadixCache`` over :class:`llmds.mem_cache.SWARadixCache`.

    ``SWARadixCache(req_to_token_pool, token_to_kv_pool_allocator,
    sliding_window_size, page_size, ...)`` or ``SWARadixCache(params)``. The
    allocator frees full KV with ``free`` and sliding-window KV with
    ``free_swa`` (SGLang's ``SWATokenToKVPoolAllocator``). ``inc_lock_ref``'s
    receipt carries ``swa_uuid_for_lock``; pass it back to ``dec_lock_ref``.
    ``evict(EvictParams(num_tokens, swa_num_tokens))`` runs both phases.
    Complexity and thread safety: as :class:`RadixCache`.
    """

    _tree_cls = _swa.SWARadixCache
    _pool_cls = TreeSWAPool

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if len(args) >= 3 and not hasattr(args[0], "page_size"):
            # SGLang's positional order: pools, then sliding_window_size, then page_size
            kwargs["sliding_window_size"] = args[2]
            if len(args) >= 4:
                kwargs["page_size"] = args[3]
            args = args[:2]
        super().__init__(*args, **kwargs)

    def _make_tree(self, a: dict[str, Any], pool: Any) -> Any:
        w = a.get("sliding_window_size")
        if w is None:
            raise TypeError("SWARadixCache needs sliding_window_size")
        if pool is not None and not callable(getattr(pool.inner, "free_swa", None)):
            pool = TreePool(pool.inner, self.page_size, self.device)
        self.sliding_window_size = w
        return _swa.SWARadixCache(page_size=self.page_size, sliding_window_size=w,
                                  token_to_kv_pool_allocator=pool)

    def supports_swa(self) -> bool:
        return True

    def swa_total_size(self) -> int:
        return self._tree.swa_total_size()

    def _evict(self, n: Any, s: Any, m: Any) -> EvictResult:
        r = self._tree.evict(n, s)
        return EvictResult(num_tokens_evicted=r.full_evicted, swa_num_tokens_evicted=r.swa_evicted)

    def _receipt(self, delta: int, node: Any, token: Any) -> IncLockRefResult:
        return IncLockRefResult(delta, node_id=node.id, swa_uuid_for_lock=token)

    def _release(self, node: Any, params: Any, kwargs: dict[str, Any]) -> None:
        if params is None:
            uuid = kwargs.get("swa_uuid_for_lock")
        elif is_int(params):
            uuid = int(params)  # the older positional form
        else:
            uuid = getattr(params, "swa_uuid_for_lock", None)
        self._tree.dec_lock_ref(node, uuid)


class MambaRadixCache(RadixCache):
    """SGLang's ``MambaRadixCache`` over :class:`llmds.mem_cache.MambaRadixCache`.

    ``MambaRadixCache(params)`` (or the positional form with ``mamba_pool=``);
    the state pool is ``req_to_token_pool.mamba_pool`` unless given.
    ``insert(InsertParams(key, value, mamba_value=tensor([slot])))`` attaches a
    state; ``match_prefix`` ends at the last node with a state and reports
    ``mamba_branching_seqlen``; ``evict(EvictParams(num_tokens, mamba_num=k))``
    runs both phases. Complexity and thread safety: as :class:`RadixCache`.
    """

    def _make_tree(self, a: dict[str, Any], pool: Any) -> Any:
        states = a.get("mamba_pool")
        if states is None:
            states = getattr(self.req_to_token_pool, "mamba_pool", None)
        self.mamba_pool = states
        if states is not None and not callable(getattr(states, "free_track_slot", None)):
            if not callable(getattr(states, "free", None)):
                raise TypeError(f"mamba_pool must have free(indices) or free_track_slot(slot), "
                                f"got {show(states)}")
            states = TreeStatePool(states, self.device)
        return _mamba.MambaRadixCache(page_size=self.page_size, token_to_kv_pool_allocator=pool,
                                      mamba_pool=states,
                                      mamba_cache_chunk_size=a.get("mamba_cache_chunk_size", 1))

    def supports_mamba(self) -> bool:
        return True

    def mamba_evictable_size(self) -> int:
        return self._tree.mamba_evictable_size()

    def mamba_protected_size(self) -> int:
        return self._tree.mamba_protected_size()

    def _insert(self, key: Any, value: Any, p: Any) -> Any:
        mv = getattr(p, "mamba_value", None)
        if mv is None:
            return self._tree.insert(key, value)
        return self._tree.insert(key, value, mamba_value=mv)

    def _evict(self, n: Any, s: Any, m: Any) -> EvictResult:
        r = self._tree.evict(n, m)
        return EvictResult(num_tokens_evicted=r.full_evicted, mamba_num_evicted=r.mamba_evicted)

    def _receipt(self, delta: int, node: Any, token: Any) -> IncLockRefResult:
        return IncLockRefResult(delta, node_id=node.id, mamba_locked=token)

    def _release(self, node: Any, params: Any, kwargs: dict[str, Any]) -> None:
        token = getattr(params, "mamba_locked", None) if params is not None else None
        if token is None:  # no receipt: the node's own state lock, if it holds one
            token = bool(getattr(node, "mamba_lock_ref", 0)) and (
                node.self_lock_ref <= node.mamba_lock_ref)
        self._tree.dec_lock_ref(node, token)


class ChunkCache(RadixCache):
    """SGLang's ``ChunkCache``: no prefix sharing (``ChunkCache(req_to_token_pool,
    token_to_kv_pool_allocator, page_size)`` or ``ChunkCache(params)``). Every
    match is empty; ``cache_finished_req`` frees the request's KV;
    ``cache_unfinished_req`` keeps its row as the request's prefix. O(1) per call
    besides the frees. Thread safety: as :class:`RadixCache`.
    """

    def _make_tree(self, a: dict[str, Any], pool: Any) -> Any:
        return _chunk.ChunkCache(token_to_kv_pool_allocator=pool)

    def is_chunk_cache(self) -> bool:
        return True

    def match_prefix(self, params: Any = None, **kwargs: Any) -> MatchResult:
        return MatchResult(torch.empty(0, dtype=_INT64, device=self.device), None, None, None)

    def evictable_size(self) -> int:
        return 0

    def protected_size(self) -> int:
        return 0

    def total_size(self) -> int:
        return 0

    def swa_evictable_size(self) -> int:
        return 0

    def swa_protected_size(self) -> int:
        return 0

    @property
    def root_node(self) -> Any:
        return None

    def reset(self) -> None:
        return None

    def insert(self, params: Any = None, value: Any = None, **kwargs: Any) -> InsertResult:
        return InsertResult(0)

    def evict(self, params: Any = 0) -> EvictResult:
        return EvictResult()

    def inc_lock_ref(self, node: Any) -> IncLockRefResult:
        return IncLockRefResult(0)

    def dec_lock_ref(self, node: Any, params: Any = None, **kwargs: Any) -> DecLockRefResult:
        return DecLockRefResult(0)

    def all_values_flatten(self) -> Any:
        return torch.empty(0, dtype=_INT64, device=self.device)

    def pretty_print(self) -> None:
        print("ChunkCache (no prefix sharing): 0 tokens")

    def _check(self) -> None:
        return None

    def cache_finished_req(self, req: Any, is_insert: bool = True, **kwargs: Any) -> None:
        if hasattr(req, "pop_committed_kv_cache"):
            committed = req.pop_committed_kv_cache()
        else:
            committed = len(req.origin_input_ids) + len(req.output_ids) - 1
        self._free(self._row(req, committed))

    def cache_unfinished_req(self, req: Any, chunked: bool = False, **kwargs: Any) -> None:
        req.prefix_indices = self._row(req, len(req.fill_ids))
        req.cache_protected_len = len(req.prefix_indices)
