"""Abstract prefix-cache interface and the records every prefix cache shares.

Concrete caches (:class:`~llmds.mem_cache.radix_cache.RadixCache`,
:class:`~llmds.mem_cache.chunk_cache.ChunkCache`, and later the sliding-window and
Mamba-state variants) subclass :class:`BasePrefixCache` and return the records
defined here. KV indices are NumPy ``int64`` arrays, or torch tensors when the cache
was given tensors (:mod:`llmds._torch` converts at the boundary; torch is optional
and never imported by this module).

The hash helpers give a stable, position-aware identity to a page of token ids
(SHA-256, not Python's salted ``hash``), the same digests on every machine.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from llmds._torch import as_array, is_tensor
from llmds._validate import show

__all__ = [
    "BasePrefixCache",
    "EvictResult",
    "InsertResult",
    "MatchResult",
    "RadixKey",
    "hash_bytes",
    "hash_to_int64",
    "hash_token_ids",
    "kv_indices",
]

_TOKEN_LIMIT = 1 << 32
_INT64_SIGN = 1 << 63
_max_reduce = np.maximum.reduce  # the ufuncs directly: ndarray.max() adds ~1 us of wrappers
_min_reduce = np.minimum.reduce


def kv_indices(
    value: Any, num_tokens: int, pool: Any = None, *, owned: bool = True
) -> npt.NDArray[np.int64]:
    """``value`` checked as ``num_tokens`` KV-slot indices of ``pool``, as int64. O(n).

    Every prefix cache's ``insert`` runs this before changing anything: one
    integer index per token (bools, floats and objects are rejected by type),
    every index ``>= 0`` (a uint64 above 2**63 - 1 is a wrapped negative, rejected,
    never wrapped), below ``pool.size`` when the pool has an int ``size``, and
    allocated when the pool has ``is_allocated(indices)`` (as
    :class:`~llmds.mem_cache.allocator.TokenToKVPoolAllocator` does): a cache that
    held a free slot would hand it back to the pool twice. ``owned=False`` leaves
    the allocation check to the caller (a radix cache checks only the indices it
    takes, past the cached prefix).

    >>> kv_indices([3, 4], 2).tolist()
    [3, 4]
    >>> kv_indices(np.array([-1]), 1)
    Traceback (most recent call last):
    ValueError: value must hold KV indices >= 0, got -1
    """
    if not isinstance(value, np.ndarray) and is_tensor(value):
        value = as_array(value, "value")  # a CUDA tensor: one copy to the host
    try:
        vals = value if isinstance(value, np.ndarray) else np.asarray(value)
    except (TypeError, ValueError, OverflowError):
        raise TypeError(f"value must be a 1-D array of KV indices, got {show(value)}") from None
    if vals.ndim != 1 or vals.shape[0] != num_tokens:
        raise ValueError(
            f"value must be 1-D with one index per token: len(key)={num_tokens}, "
            f"value shape {vals.shape}"
        )
    if num_tokens == 0:
        return np.empty(0, dtype=np.int64)
    dt = vals.dtype
    if dt.kind not in "iu":
        raise TypeError(f"value must hold integer KV indices, got dtype {dt}")
    hi = int(_max_reduce(vals))
    if dt.kind == "u" and hi >= _INT64_SIGN:
        raise ValueError(
            f"value must hold KV indices <= 2**63 - 1 (a wrapped negative?), got {hi}"
        )
    lo = int(_min_reduce(vals))
    if lo < 0:
        raise ValueError(f"value must hold KV indices >= 0, got {lo}")
    size = getattr(pool, "size", None)
    if isinstance(size, int | np.integer) and hi >= size:
        raise ValueError(f"value must hold KV indices < the pool size {int(size)}, got {hi}")
    out = vals.astype(np.int64, copy=False)
    check = getattr(pool, "is_allocated", None) if owned else None
    if callable(check) and not check(out):
        raise ValueError(
            "value holds KV indices that are not allocated in token_to_kv_pool_allocator "
            "(free, or never handed out)"
        )
    return out


def _token_u32le(token: Any) -> bytes:
    """One token id as 4 little-endian unsigned bytes, range-checked (the per-token
    encoding of :func:`hash_token_ids`; a radix key is encoded whole by
    :func:`llmds.mem_cache._keys.key_token_bytes`)."""
    if isinstance(token, (bool, np.bool_)) or not isinstance(token, (int, np.integer)):
        raise TypeError(f"token ids must be ints, got {token!r} ({type(token).__name__})")
    t = int(token)
    if not 0 <= t < _TOKEN_LIMIT:
        raise ValueError(f"token ids must be in [0, 2**32), got {t}")
    return t.to_bytes(4, "little", signed=False)


def hash_token_ids(
    token_ids: Sequence[int | tuple[int, ...]] | npt.NDArray[np.integer],
    prior_hash: str | None = None,
) -> str:
    """SHA-256 hex digest of a page of token ids, optionally chained. O(len(token_ids)).

    Each token is fed as a 4-byte little-endian unsigned integer; a tuple token
    (bigram / EAGLE keys) feeds each element in order. When ``prior_hash`` is given
    its raw digest bytes (``bytes.fromhex``) are fed first, so the digest of a page
    depends on every page before it (a hash chain, position-aware).

    >>> h = hash_token_ids([1, 2, 3])
    >>> h
    '4636993d3e1da4e9d6b8f87b79e8f7c6d018580d52661950eabc3845c5897a4d'
    >>> hash_token_ids([4, 5, 6], prior_hash=h)[:16]
    'b33a1d453499d2f2'

    Raises ``ValueError`` for a token outside ``[0, 2**32)`` or a ``prior_hash`` that
    is not hex, ``TypeError`` for a token that is not an int.
    """
    hasher = hashlib.sha256()
    if prior_hash:
        try:
            hasher.update(bytes.fromhex(prior_hash))
        except (ValueError, TypeError):
            raise ValueError(f"prior_hash must be a hex digest, got {prior_hash!r}") from None
    if isinstance(token_ids, np.ndarray):
        arr = token_ids.ravel()
        if arr.size:
            if not np.issubdtype(arr.dtype, np.integer):
                raise TypeError(f"token ids must be integers, got dtype {arr.dtype}")
            lo, hi = int(arr.min()), int(arr.max())
            if lo < 0 or hi >= _TOKEN_LIMIT:
                bad = lo if lo < 0 else hi
                raise ValueError(f"token ids must be in [0, 2**32), got {bad}")
            hasher.update(arr.astype("<u4").tobytes())
        return hasher.hexdigest()
    parts: list[bytes] = []
    for t in token_ids:
        if isinstance(t, tuple):
            parts.extend(_token_u32le(e) for e in t)
        else:
            parts.append(_token_u32le(t))
    hasher.update(b"".join(parts))
    return hasher.hexdigest()


def hash_to_int64(hex_str: str) -> int:
    """Signed 64-bit integer of the first 16 hex digits of a digest. O(1).

    >>> hash_to_int64("4636993d3e1da4e9d6b8f87b79e8f7c6d018580d52661950eabc3845c5897a4d")
    5059399719711515881
    """
    if not isinstance(hex_str, str) or len(hex_str) < 16:
        raise ValueError(f"hex_str must be a hex string of >= 16 digits, got {hex_str!r}")
    try:
        val = int(hex_str[:16], 16)
    except ValueError:
        raise ValueError(f"hex_str must be hexadecimal, got {hex_str!r}") from None
    return val - (1 << 64) if val >= _INT64_SIGN else val


def hash_bytes(data: bytes) -> int:
    """Unsigned 64-bit int of SHA-256(``data``): first 8 digest bytes, big-endian. O(len).

    >>> hash_bytes(b"abc")
    13436514500253700074
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data must be bytes-like, got {type(data).__name__}")
    return int.from_bytes(hashlib.sha256(data).digest()[:8], "big", signed=False)


class RadixKey:
    """Compound lookup key: a token-id sequence plus an optional namespace tag.

    ``extra_key`` (a LoRA id, a tenant, a multimodal context hash; any hashable)
    isolates namespaces: keys with identical leading tokens but different
    ``extra_key`` never share prefix-cache nodes. ``token_ids`` is kept as given
    (a list or a NumPy integer array); caches validate it when they use it.

    ``len``/``iter`` are over tokens; ``key[i]`` and ``key[a:b]`` give a new
    ``RadixKey`` in the same namespace. O(1) construction, slicing O(slice).

    Thread safety: immutable in use (the caches never change a key); sharing one
    between threads is safe as long as no one mutates ``token_ids``.

    >>> k = RadixKey([1, 2, 3, 4], extra_key="lora-7")
    >>> len(k), k[1:3]
    (4, RadixKey(extra_key='lora-7', token_ids=[2, 3]))
    >>> k[0].token_ids
    [1]
    """

    __slots__ = ("extra_key", "token_ids")

    def __init__(
        self,
        token_ids: Sequence[int | tuple[int, ...]] | npt.NDArray[np.integer],
        extra_key: Hashable | None = None,
    ) -> None:
        self.token_ids = token_ids
        self.extra_key = extra_key

    def __len__(self) -> int:
        return len(self.token_ids)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.token_ids)

    def __getitem__(self, idx: int | slice) -> RadixKey:
        if isinstance(idx, slice):
            return RadixKey(self.token_ids[idx], self.extra_key)
        if isinstance(idx, (int, np.integer)) and not isinstance(idx, bool):
            n = len(self.token_ids)
            i = int(idx)
            if not -n <= i < n:
                raise IndexError(f"RadixKey index {i} out of range for length {n}")
            i %= n
            return RadixKey(self.token_ids[i : i + 1], self.extra_key)
        raise TypeError(f"idx must be an int or a slice, got {show(idx)}")

    def __repr__(self) -> str:
        preview = list(self.token_ids[:10])
        preview = [int(t) if isinstance(t, np.integer) else t for t in preview]
        tail = "..." if len(self.token_ids) > 10 else ""
        return f"RadixKey(extra_key={self.extra_key!r}, token_ids={preview}{tail})"


def _empty_indices() -> npt.NDArray[np.int64]:
    return np.empty(0, dtype=np.int64)


@dataclass(frozen=True, slots=True)
class MatchResult:
    """Returned by :meth:`BasePrefixCache.match_prefix`.

    ``indices``: int64 KV indices of the matched prefix (length ``prefix_len``);
    ``last_node``: the node where the match ends (pass it to ``inc_lock_ref``);
    ``mamba_branching_seqlen``: for the Mamba-state variant, else ``None``.

    Thread safety: frozen; ``indices`` is the caller's own copy.
    """

    indices: npt.NDArray[np.int64]
    last_node: Any = None
    prefix_len: int = 0
    mamba_branching_seqlen: int | None = None


@dataclass(frozen=True, slots=True)
class InsertResult:
    """Returned by :meth:`BasePrefixCache.insert`.

    ``prefix_len``: how many leading tokens were already cached; the caller frees
    its own indices for those (they duplicate the cached ones).

    Thread safety: frozen.
    """

    prefix_len: int = 0
    last_node: Any = None
    mamba_exist: bool = False


@dataclass(frozen=True, slots=True)
class EvictResult:
    """Returned by :meth:`BasePrefixCache.evict`: tokens (or states) evicted.

    Thread safety: frozen.
    """

    full_evicted: int = 0
    swa_evicted: int = 0
    mamba_evicted: int = 0


class BasePrefixCache(ABC):
    """Abstract interface of every prefix cache.

    A prefix cache maps token-id prefixes (in a namespace) to KV indices. The
    scheduler's loop is: ``match_prefix`` the prompt, ``inc_lock_ref`` the match so
    it cannot be evicted, allocate KV for the rest (``evict`` when short),
    ``insert`` prompt + output, free the duplicates ``insert`` reports, and
    ``dec_lock_ref``. Sizes are in tokens; ``evictable + protected == total``.

    Thread safety: the caches are not thread-safe; guard one with a lock when shared.
    """

    @abstractmethod
    def reset(self) -> None:
        """Clear all cached state and re-initialise."""

    @abstractmethod
    def match_prefix(self, key: RadixKey) -> MatchResult:
        """Find the longest cached prefix of ``key``."""

    @abstractmethod
    def insert(
        self, key: RadixKey, value: npt.NDArray[np.int64] | None = None, **kwargs: Any
    ) -> InsertResult:
        """Insert ``key`` with KV indices ``value`` (one per token)."""

    @abstractmethod
    def evict(self, num_tokens: int, swa_num_tokens: int = 0) -> EvictResult:
        """Evict at least ``num_tokens`` tokens if possible, to free memory."""

    @abstractmethod
    def inc_lock_ref(self, node: Any) -> Any | None:
        """Lock ``node`` and its ancestors against eviction.

        Returns an opaque token (``None`` for plain caches; the SWA variant returns a
        boundary id) that must be passed back to :meth:`dec_lock_ref`.
        """

    @abstractmethod
    def dec_lock_ref(self, node: Any, **kwargs: Any) -> None:
        """Undo one :meth:`inc_lock_ref` of ``node``."""

    def evictable_size(self) -> int:
        """Tokens that eviction may free (unlocked). O(1)."""
        return 0

    def swa_evictable_size(self) -> int:
        """Sliding-window tokens that eviction may free. O(1)."""
        return 0

    def protected_size(self) -> int:
        """Tokens protected by a lock. O(1)."""
        return 0

    def swa_protected_size(self) -> int:
        """Sliding-window tokens protected by a lock. O(1)."""
        return 0

    def total_size(self) -> int:
        """All cached tokens. O(1)."""
        return 0
