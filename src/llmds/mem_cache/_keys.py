"""Key, namespace and argument coercion shared by the radix prefix caches (internal).

:class:`~llmds.mem_cache.radix_cache.RadixCache`, its sliding-window and Mamba
variants all turn a key into the same two things before they touch the tree: the
key's token ids as raw little-endian ``uint32`` bytes (a node stores its tokens that
way, so a whole-node comparison is one C-level ``bytes`` comparison) and the
canonical namespace that selects the tree. This module is that seam; nothing here
changes a cache.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Hashable
from typing import Any

import numpy as np
import numpy.typing as npt

from llmds._kernels import kv as _kv
from llmds._torch import IndexFormat, as_array, as_index_format
from llmds._validate import check_int
from llmds.mem_cache.base_prefix_cache import MatchResult, RadixKey, kv_indices
from llmds.page_hash import TOKEN_LIMIT, encode_namespace

__all__ = [
    "EMPTY_I64",
    "claim_indices",
    "evict_counts",
    "insert_args",
    "key_bytes",
    "key_token_bytes",
    "namespace",
    "out_format",
    "tensor_match",
]

EMPTY_I64 = np.empty(0, dtype=np.int64)
EMPTY_I64.flags.writeable = False
_U32 = np.dtype("<u4")
_I32 = np.dtype("<i4")
_min_reduce = np.minimum.reduce  # the ufunc directly: ndarray.min() adds ~1 us of wrappers
_NS_TAG = "llmds/ns"
# a list of Python ints straight to uint32 bytes (C unsigned int: 4 bytes, native order)
_LIST_FAST = array("I").itemsize == 4 and sys.byteorder == "little"


def key_token_bytes(token_ids: Any) -> bytes:
    """Token ids validated and encoded as little-endian ``uint32`` bytes. O(n).

    The per-key encoding of the radix caches (not to be confused with the per-token
    encoding of :func:`~llmds.mem_cache.base_prefix_cache.hash_token_ids`).

    >>> key_token_bytes([1, 258])
    b'\\x01\\x00\\x00\\x00\\x02\\x01\\x00\\x00'

    A list or tuple of ints (how SGLang passes ``origin_input_ids``) goes through
    ``array('I')``, which checks each id is an int in ``[0, 2**32)``: 5 us for a
    900-token prompt where ``np.asarray`` costs 26 us (half of a match + insert
    pair through the SGLang facade). Anything it refuses, and a list of bools (it
    would take ``True`` as 1), takes the array path, which names the problem.
    """
    if _LIST_FAST and (type(token_ids) is list or type(token_ids) is tuple) and token_ids \
            and type(token_ids[0]) is not bool:
        try:
            return array("I", token_ids).tobytes()
        except (TypeError, OverflowError):
            pass  # not ints in range: the array path below says which
    arr = token_ids if isinstance(token_ids, np.ndarray) else as_array(token_ids, "token_ids")
    if arr.ndim != 1:
        raise TypeError(
            f"token_ids must be a 1-D sequence of ints (tuple/bigram keys are not "
            f"supported by RadixCache), got shape {arr.shape}"
        )
    if arr.size == 0:
        return b""
    dt = arr.dtype
    if dt == _I32:
        lo = _min_reduce(arr)
        if lo < 0:
            raise ValueError(f"token_ids must be in [0, 2**32), got {int(lo)}")
        return arr.tobytes()
    if dt == _U32:
        return arr.tobytes()
    if dt.kind not in "iu":
        raise TypeError(f"token_ids must be integers, got dtype {dt}")
    lo, hi = int(arr.min()), int(arr.max())
    if lo < 0 or hi >= TOKEN_LIMIT:
        raise ValueError(f"token_ids must be in [0, 2**32), got {lo if lo < 0 else hi}")
    return arr.astype(_U32).tobytes()


def namespace(extra: Any) -> Hashable:
    """The tree a namespace key selects: one per canonical value. O(size of the key).

    Namespaces follow :func:`llmds.page_hash.encode_namespace` (None, int, str,
    bytes, tuples of those; anything else is a TypeError), not Python equality, so
    ``True`` never aliases ``1`` (rejected) nor ``1.0`` (rejected), and
    ``np.int64(3)`` is the namespace ``3``. Plain None/int/str/bytes are their own
    key (the common, fast case); a tuple is keyed by its canonical bytes.

    >>> namespace("lora-1"), namespace(np.int64(3))
    ('lora-1', 3)
    """
    t = type(extra)
    if extra is None or t is str or t is int or t is bytes:
        return extra
    enc = encode_namespace(extra)  # raises TypeError for a non-canonical key
    if isinstance(extra, tuple):
        return (_NS_TAG, enc)
    if isinstance(extra, str):
        return str(extra)
    if isinstance(extra, bytes):
        return bytes(extra)
    return int(extra)


def key_bytes(key: Any) -> tuple[bytes, Hashable]:
    """A :class:`RadixKey` or a token sequence as (uint32 token bytes, namespace). O(n)."""
    if isinstance(key, RadixKey):
        return key_token_bytes(key.token_ids), namespace(key.extra_key)
    return key_token_bytes(key), None


def insert_args(
    key: Any, value: Any, pool: Any, owned: bool = False
) -> tuple[bytes, Hashable, npt.NDArray[np.int64]]:
    """``insert``'s arguments checked: the key's token bytes, its namespace, and one
    int64 KV index per token of ``pool`` (:func:`kv_indices`; the token ids themselves
    when ``value`` is None). O(len(key)). Raises ``ValueError``/``TypeError``."""
    kb, extra = key_bytes(key)
    ntok = len(kb) >> 2
    if value is None:
        value = np.frombuffer(kb, dtype=_U32)
    return kb, extra, kv_indices(value, ntok, pool, owned=owned)


def out_format(key: Any, fmt: IndexFormat | None) -> IndexFormat | None:
    """The format of a call's index results: the cache's own (``fmt``, set by the
    first tensor of KV indices it was given), else int64 on the device of a tensor
    ``key``, else ``None`` (NumPy). O(1); one dict look-up when torch is not loaded.
    """
    if fmt is not None:
        return fmt
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    toks = key.token_ids if isinstance(key, RadixKey) else key
    return (toks.device, torch.int64) if isinstance(toks, torch.Tensor) else None


def tensor_match(res: MatchResult, fmt: IndexFormat) -> MatchResult:
    """``res`` with its indices as a tensor of format ``fmt``. O(prefix_len)."""
    return MatchResult(indices=as_index_format(res.indices, fmt), last_node=res.last_node,
                       prefix_len=res.prefix_len,
                       mamba_branching_seqlen=res.mamba_branching_seqlen)


def evict_counts(num_tokens: Any, swa_num_tokens: Any) -> tuple[int, int]:
    """``evict``'s two counts as ints >= 0 (TypeError/ValueError naming the argument). O(1)."""
    if type(num_tokens) is not int or num_tokens < 0:
        num_tokens = check_int(num_tokens, "num_tokens", minimum=0)
    if type(swa_num_tokens) is not int or swa_num_tokens < 0:
        swa_num_tokens = check_int(swa_num_tokens, "swa_num_tokens", minimum=0)
    return num_tokens, swa_num_tokens


def claim_indices(
    new: npt.NDArray[np.int64], held: npt.NDArray[np.bool_] | None, pool: Any, owned: bool
) -> None:
    """Claim ``new``, the KV indices an insert would add to a tree, or raise ValueError.

    They must be allocated in ``pool`` (``owned``, when it has ``is_allocated``),
    held by no node (``held``: the tree's flags per pool slot, ``None`` when the
    pool has no int ``size``) and appear once; on success they are marked held (the
    insert must not fail after this, or unmark them). O(n), two small numba passes
    (a NumPy version with ``np.unique`` cost ~20 us per insert of 1,000 tokens).
    """
    check = getattr(pool, "is_allocated", None)
    check = check if owned and callable(check) else None
    if held is None and check is None:
        return
    if check is not None and not check(new):
        raise ValueError(
            "value holds KV indices that are not allocated in token_to_kv_pool_allocator "
            "(free, or never handed out)"
        )
    if held is None or not new.size:
        return
    at = _kv.claim(new, held)
    if at >= 0:
        bad = int(new[at])
        if bad in new[:at]:
            raise ValueError(f"value repeats KV index {bad}; each token needs its own slot")
        raise ValueError(f"value holds KV index {bad}, which the cache already holds "
                         "for another key; each cached token needs its own slot")
