"""The parameter and result records of SGLang's prefix-cache interface (internal).

Re-exported by :mod:`llmds.integrations.sglang`; written from SGLang's documented
field names and defaults (``sglang.srt.mem_cache.base_prefix_cache``), not copied.
The records are mutable dataclasses, as SGLang's are; the lock receipts and the
insert result are ints as well (see each class), so code written for SGLang's older
integer returns and code written for the record forms both work.

Also how a facade reads its callers' arguments in SGLang's several forms:
:func:`key_of` (a params object, an llmds or SGLang ``RadixKey``, a token sequence)
and :func:`init_args` (``CacheInitParams`` or the positional/keyword constructor).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable
from typing import Any, NamedTuple

from llmds.mem_cache.base_prefix_cache import RadixKey as _LLMDSKey

__all__ = [
    "CacheInitParams",
    "DecLockRefParams",
    "DecLockRefResult",
    "EvictParams",
    "EvictResult",
    "IncLockRefResult",
    "InsertParams",
    "InsertResult",
    "MatchPrefixParams",
    "MatchResult",
    "RadixKey",
    "init_args",
    "key_of",
]


class RadixKey(_LLMDSKey):
    """SGLang's ``RadixKey(token_ids, extra_key=None, is_bigram=False)``.

    ``token_ids`` may be a list, an ``array('q')``, a NumPy array or a torch
    tensor; ``extra_key`` namespaces the tree (LoRA id, cache salt). Bigram
    (EAGLE) keys are not supported: ``is_bigram=True`` raises NotImplementedError.
    Slicing and indexing give ``RadixKey`` objects in the same namespace, as
    SGLang's do. O(1) construction.

    Thread safety: immutable in use.
    """

    __slots__ = ("is_bigram",)

    def __init__(self, token_ids: Any, extra_key: Hashable | None = None,
                 is_bigram: bool = False) -> None:
        if is_bigram:
            raise NotImplementedError("bigram (EAGLE) radix keys are not supported by llmds")
        super().__init__(token_ids, extra_key)
        self.is_bigram = False

    def __getitem__(self, idx: int | slice) -> RadixKey:
        k = super().__getitem__(idx)
        return RadixKey(k.token_ids, k.extra_key)


@dataclasses.dataclass
class CacheInitParams:
    """SGLang's constructor parameter object (the fields llmds reads, SGLang's
    defaults). Unknown fields of SGLang's own object are ignored when one of those
    is passed instead (it is duck-typed)."""

    disable: bool = False
    req_to_token_pool: Any = None
    token_to_kv_pool_allocator: Any = None
    page_size: int = 1
    enable_kv_cache_events: bool = False
    is_eagle: bool = False
    eviction_policy: str = "lru"
    sliding_window_size: int | None = None
    disable_finished_insert: bool = False
    enable_metrics: bool = False


@dataclasses.dataclass
class MatchPrefixParams:
    """``match_prefix``'s argument: the key (``cow_mamba`` and ``req`` are accepted
    and ignored)."""

    key: Any
    cow_mamba: bool = False
    req: Any = None


@dataclasses.dataclass
class InsertParams:
    """``insert``'s argument: key, KV indices (``None``: the token ids themselves),
    the Mamba state slot; the SWA and scheduling fields are accepted, and only
    ``priority == 0`` is supported (LRU order)."""

    key: Any = None
    value: Any = None
    mamba_value: Any = None
    prev_prefix_len: int = 0
    swa_evicted_seqlen: int = 0
    swa_branching_seqlen: int | None = None
    chunked: bool = False
    priority: int = 0


class InsertResult(int):
    """``insert``'s result: an int equal to ``prefix_len`` (SGLang's older return)
    with SGLang's record fields ``prefix_len``, ``total_len``, ``last_device_node``
    and ``mamba_exist``. O(1)."""

    prefix_len: int
    total_len: int
    last_device_node: Any
    mamba_exist: bool

    def __new__(cls, prefix_len: int, total_len: int = 0, last_device_node: Any = None,
                mamba_exist: bool = False) -> InsertResult:
        self = super().__new__(cls, prefix_len)
        self.prefix_len = prefix_len
        self.total_len = total_len
        self.last_device_node = last_device_node
        self.mamba_exist = mamba_exist
        return self

    def __repr__(self) -> str:
        return (f"InsertResult(prefix_len={self.prefix_len}, total_len={self.total_len}, "
                f"mamba_exist={self.mamba_exist})")


@dataclasses.dataclass
class EvictParams:
    """``evict``'s argument: full-KV tokens, sliding-window tokens, Mamba states."""

    num_tokens: int = 0
    swa_num_tokens: int = 0
    mamba_num: int = 0


@dataclasses.dataclass
class EvictResult:
    """``evict``'s result: what left the cache."""

    num_tokens_evicted: int = 0
    swa_num_tokens_evicted: int = 0
    mamba_num_evicted: int = 0


@dataclasses.dataclass
class DecLockRefParams:
    """The receipt ``dec_lock_ref`` takes (``IncLockRefResult.to_dec_params()``)."""

    node_id: int | None = None
    swa_uuid_for_lock: int | None = None
    swa_uuid_for_host_lock: int | None = None
    mamba_locked: bool | None = None


class IncLockRefResult(int):
    """``inc_lock_ref``'s receipt: an int equal to ``delta`` (the change of
    ``evictable_size()``, SGLang's older return) carrying ``node_id``,
    ``swa_uuid_for_lock`` and ``mamba_locked``; ``to_dec_params()`` gives the
    :class:`DecLockRefParams` for the release. O(1)."""

    delta: int
    node_id: int | None
    swa_uuid_for_lock: int | None
    mamba_locked: bool | None

    def __new__(cls, delta: int = 0, node_id: int | None = None,
                swa_uuid_for_lock: int | None = None,
                mamba_locked: bool | None = None) -> IncLockRefResult:
        self = super().__new__(cls, delta)
        self.delta = delta
        self.node_id = node_id
        self.swa_uuid_for_lock = swa_uuid_for_lock
        self.mamba_locked = mamba_locked
        return self

    def to_dec_params(self) -> DecLockRefParams:
        return DecLockRefParams(node_id=self.node_id, swa_uuid_for_lock=self.swa_uuid_for_lock,
                                mamba_locked=self.mamba_locked)

    def __repr__(self) -> str:
        return (f"IncLockRefResult(delta={self.delta}, node_id={self.node_id}, "
                f"swa_uuid_for_lock={self.swa_uuid_for_lock})")


class DecLockRefResult(int):
    """``dec_lock_ref``'s result: an int equal to ``delta`` (SGLang's older return),
    with the field ``delta``. O(1)."""

    delta: int

    def __new__(cls, delta: int = 0) -> DecLockRefResult:
        self = super().__new__(cls, delta)
        self.delta = delta
        return self


class MatchResult(NamedTuple):
    """``match_prefix``'s result, SGLang's fields: ``device_indices`` (an int64
    tensor on the KV pool's device), the node the match ends at (as
    ``last_device_node``, ``last_host_node`` and ``best_match_node``: llmds has no
    host tier), and the Mamba branching position."""

    device_indices: Any
    last_device_node: Any
    last_host_node: Any
    best_match_node: Any = None
    host_hit_length: int = 0
    swa_host_hit_length: int = 0
    swa_branching_seqlen: int | None = None
    mamba_host_hit_length: int = 0
    mamba_branching_seqlen: int | None = None
    cache_protected_len: int | None = None
    full_kv_hit_length: int = 0


# ------------------------------------------------ reading the callers' arguments
_MISSING = object()


def key_of(arg: Any) -> Any:
    """The llmds key inside ``arg``: a params object's ``key``, an llmds or SGLang
    ``RadixKey`` (duck-typed), or a bare token sequence. O(1)."""
    if isinstance(arg, _LLMDSKey):
        return arg
    k = getattr(arg, "key", _MISSING)
    if k is not _MISSING:
        arg = k
        if isinstance(arg, _LLMDSKey):
            return arg
    toks = getattr(arg, "token_ids", None)
    if toks is not None:  # SGLang's own RadixKey
        if getattr(arg, "is_bigram", False):
            raise NotImplementedError("bigram (EAGLE) radix keys are not supported by llmds")
        return _LLMDSKey(toks, getattr(arg, "extra_key", None))
    return arg


def init_args(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """SGLang's constructor arguments, in either form, as one dict. O(1)."""
    if len(args) == 1 and not kwargs and hasattr(args[0], "token_to_kv_pool_allocator") \
            and hasattr(args[0], "page_size"):
        p = args[0]  # a CacheInitParams (SGLang's or ours)
        return {f: getattr(p, f, d) for f, d in (
            ("req_to_token_pool", None), ("token_to_kv_pool_allocator", None),
            ("page_size", 1), ("disable", False), ("enable_kv_cache_events", False),
            ("is_eagle", False), ("eviction_policy", "lru"), ("sliding_window_size", None),
            ("disable_finished_insert", False))}
    names = ("req_to_token_pool", "token_to_kv_pool_allocator", "page_size")
    if len(args) > len(names):
        raise TypeError(f"expected at most {len(names)} positional arguments "
                        f"({', '.join(names)}), got {len(args)}")
    out: dict[str, Any] = {"req_to_token_pool": None, "token_to_kv_pool_allocator": None,
                           "page_size": 1, "disable": False, "enable_kv_cache_events": False,
                           "is_eagle": False, "eviction_policy": "lru",
                           "disable_finished_insert": False}
    out.update(zip(names, args, strict=False))
    for k, v in kwargs.items():
        if k in out and k in names[: len(args)]:
            raise TypeError(f"got multiple values for argument {k!r}")
        out[k] = v
    return out
