"""Page identity: the one definition of "the same KV page" shared by every llmds cache.

A paged KV cache reuses a page when its *identity* matches: the tokens of the page,
every token before it, the namespace (tenant, LoRA adapter, model) and the page size.
Identity crosses tenants, processes and machines (a remote page tier shared by a
:class:`~llmds.kv_cache.KVCache` replica and a RadixCache replica), so it is a
collision-resistant hash over a canonical byte encoding, never ``repr`` or Python's
``hash``. This module is that definition; :class:`~llmds.kv_cache.KVCache` computes
exactly these digests, and any other tier must use these functions (or reproduce the
format below byte for byte) to interoperate.

**Format, version 1** (frozen; the library's test suite pins test vectors).

* Token ids are canonical as unsigned 32-bit little-endian integers: ids must lie in
  ``[0, 2**32)`` (and below ``vocab_size`` when one is given).
* The namespace ``extra_key`` is encoded by :func:`encode_namespace`, a type-tagged,
  length-prefixed (so prefix-free, so injective) encoding; ``u32`` is a 4-byte
  little-endian unsigned length or count:

  =========  ==================================================================
  ``None``   ``00``
  ``int``    ``01 u32(n) <n bytes: signed little-endian two's complement>``,
             ``n = (x.bit_length() + 8) // 8`` (NumPy integers as their value;
             ``bool`` is rejected: ``True`` is not the namespace ``1``)
  ``str``    ``02 u32(n) <n bytes of UTF-8>`` (lone surrogates kept, as
             ``surrogatepass``)
  ``bytes``  ``03 u32(n) <n bytes>``
  ``tuple``  ``04 u32(count) E(item_0) E(item_1) ...`` (nested at most 32 deep)
  =========  ==================================================================

  Anything else (float, list, dict, bool, objects) raises ``TypeError``.
* The root of a chain is ``root = SHA-256(b"llmds/page-hash/v1\\x00" ||
  u64le(page_size) || E(extra_key))`` (32 bytes). Page size is part of the identity,
  so caches with different page sizes never confuse their pages.
* The identity of full page ``i`` (tokens ``[i*page_size, (i+1)*page_size)``) is
  ``d[i] = SHA-256(d[i-1] || u32le(tokens of page i))`` with ``d[-1] = root``. Only
  full pages have an identity. This step is the same as SGLang's HiCache page hash
  (``get_hash_str(page, prior_hash=d[i-1].hex())``), only the root differs.

**Why SHA-256.** On the development machine (AMD EPYC with SHA-NI, OpenSSL 3.0,
CPython 3.11), one page step of 16 tokens (32 + 64 bytes) measured, per call from
Python: ``hashlib.sha256`` 379 ns, ``hashlib.blake2b(digest_size=32)`` 381 ns,
``blake2b(digest_size=16)`` 378 ns, ``blake2s`` 412 ns; at 32 tokens: SHA-256 421 ns,
BLAKE2b-256 533 ns. A BLAKE2b-256 chain compiled with numba (all pages of a request
in one call, checked against ``hashlib``) cost 260-300 ns per page plus ~2 us per
call. None is enough faster to justify a second standard, so the identity is
SHA-256 (the hash vLLM also made its default after CVE-2025-46570), and callers
save time by not recomputing digests of pages they already hold (``KVCache`` keys
its table by the exact preimage ``d[i-1] || tokens``).

Thread safety: every function is pure and safe to call from any thread.

>>> root = root_digest(16)
>>> pages = chain_digests(list(range(32)), 16)
>>> pages[1] == page_digest(pages[0], token_bytes(list(range(16, 32))))
True
>>> len(pages), len(pages[0])
(2, 32)
"""

from __future__ import annotations

import hashlib
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from llmds._validate import check_int, check_int_array, show

__all__ = [
    "DIGEST_SIZE",
    "FORMAT_VERSION",
    "TOKEN_LIMIT",
    "chain_digests",
    "encode_namespace",
    "page_digest",
    "root_digest",
    "token_array",
    "token_bytes",
]

FORMAT_VERSION = 1
DIGEST_SIZE = 32
TOKEN_LIMIT = 1 << 32  # token ids are canonical as uint32
_DOMAIN = b"llmds/page-hash/v1\x00"
_MAX_DEPTH = 32
_U32_MAX = (1 << 32) - 1
_sha256 = hashlib.sha256
_max_reduce = np.maximum.reduce  # the ufuncs directly: ndarray.max() adds ~1 us of wrappers


def _length(n: int, what: str) -> bytes:
    if n > _U32_MAX:
        raise ValueError(f"extra_key {what} is too long to encode ({n} > 2**32 - 1)")
    return n.to_bytes(4, "little")


def _encode(value: Any, out: list[bytes], depth: int) -> None:
    if value is None:
        out.append(b"\x00")
    elif isinstance(value, bool | np.bool_):
        raise TypeError(
            f"extra_key must be None, int, str, bytes or a tuple of those, got {show(value)} "
            "(a bool is not accepted: True would alias the namespace 1)"
        )
    elif isinstance(value, int | np.integer):
        x = int(value)
        n = (x.bit_length() + 8) // 8
        out.append(b"\x01" + _length(n, "int") + x.to_bytes(n, "little", signed=True))
    elif isinstance(value, str):
        raw = value.encode("utf-8", "surrogatepass")
        out.append(b"\x02" + _length(len(raw), "str") + raw)
    elif isinstance(value, bytes):
        out.append(b"\x03" + _length(len(value), "bytes") + value)
    elif isinstance(value, tuple):
        if depth >= _MAX_DEPTH:
            raise ValueError(f"extra_key tuples may nest at most {_MAX_DEPTH} deep")
        out.append(b"\x04" + _length(len(value), "tuple"))
        for item in value:
            _encode(item, out, depth + 1)
    else:
        raise TypeError(
            f"extra_key must be None, int, str, bytes or a tuple of those, got {show(value)}"
        )


def encode_namespace(extra_key: Hashable | None) -> bytes:
    """The canonical, type-tagged byte encoding of a namespace key. O(size of the key).

    >>> encode_namespace(None).hex(), encode_namespace(1).hex(), encode_namespace("a").hex()
    ('00', '010100000001', '020100000061')
    >>> encode_namespace(("t", 7)) != encode_namespace(("t", "7"))
    True
    >>> encode_namespace(1.0)
    Traceback (most recent call last):
    TypeError: extra_key must be None, int, str, bytes or a tuple of those, got float 1.0
    """
    out: list[bytes] = []
    _encode(extra_key, out, 0)
    return b"".join(out)


def root_digest(page_size: int, extra_key: Hashable | None = None) -> bytes:
    """The 32-byte root of the page chain for ``page_size`` and namespace ``extra_key``. O(1).

    >>> root_digest(16).hex()[:16]
    'b2510a62b656296f'
    """
    ps = check_int(page_size, "page_size", minimum=1, maximum=(1 << 64) - 1)
    return _sha256(_DOMAIN + ps.to_bytes(8, "little") + encode_namespace(extra_key)).digest()


def token_array(
    token_ids: Sequence[int] | npt.ArrayLike,
    *,
    vocab_size: int | None = None,
    name: str = "token_ids",
) -> npt.NDArray[np.uint32]:
    """Token ids as a 1-D ``uint32`` array, validated: ints in ``[0, vocab_size or 2**32)``. O(n).

    Floats, bools, strings and nested lists are rejected by type, negative or too
    large ids by value (never wrapped or truncated).

    >>> token_array([1, 2]).tolist()
    [1, 2]
    >>> token_array([5], vocab_size=4)
    Traceback (most recent call last):
    ValueError: token_ids must hold values <= 3, got 5
    """
    limit = vocab_size if vocab_size is not None else TOKEN_LIMIT
    arr: Any = token_ids
    if not isinstance(arr, np.ndarray) and isinstance(arr, list | tuple):
        try:
            arr = np.asarray(arr)
        except (TypeError, ValueError, OverflowError):
            arr = token_ids  # ragged: check_int_array names the problem
    if isinstance(arr, np.ndarray) and arr.ndim == 1 and arr.dtype.kind in "iu":
        # Fast path, one reduction: a signed array viewed as unsigned of its width and
        # byte order maps negatives to 2**(bits-1) and above, past every non-negative
        # value, so ``max < min(limit, 2**(bits-1))`` checks both bounds (check_int_array
        # costs ~10 us per call; a second reduction for the minimum ~1.4 us on a
        # 1,000-token int32 prompt). The byte order must be kept: a big-endian ``-256``
        # read little-endian is 16,777,215.
        dt = arr.dtype
        if not arr.size:
            return arr.astype(np.uint32)
        if dt.kind == "u":
            ok = int(_max_reduce(arr)) < limit
        else:
            top = int(_max_reduce(arr.view(dt.str.replace("i", "u"))))
            ok = top < min(limit, 1 << (8 * dt.itemsize - 1))
        if ok:
            return arr.astype(np.uint32, copy=False)
    return check_int_array(arr, name, minimum=0, maximum=limit - 1, dtype=np.uint32)


def token_bytes(
    token_ids: Sequence[int] | npt.ArrayLike, *, vocab_size: int | None = None
) -> bytes:
    """The canonical bytes of token ids: uint32 little-endian, validated. O(n).

    >>> token_bytes([1, 258]).hex()
    '0100000002010000'
    """
    return token_array(token_ids, vocab_size=vocab_size).astype("<u4", copy=False).tobytes()


def page_digest(parent: bytes, page_token_bytes: bytes) -> bytes:
    """One chain step: ``SHA-256(parent || page_token_bytes)``. O(page size).

    ``parent`` is the previous page's digest (or the root, :func:`root_digest`);
    ``page_token_bytes`` the page's canonical token bytes (:func:`token_bytes`).
    """
    if not isinstance(parent, bytes) or len(parent) != DIGEST_SIZE:
        raise ValueError(f"parent must be a {DIGEST_SIZE}-byte digest, got {show(parent)}")
    if not isinstance(page_token_bytes, bytes) or not page_token_bytes or len(
            page_token_bytes) % 4:
        raise ValueError(
            f"page_token_bytes must be non-empty uint32 token bytes, got {show(page_token_bytes)}"
        )
    return _sha256(parent + page_token_bytes).digest()


def chain_digests(
    token_ids: Sequence[int] | npt.ArrayLike,
    page_size: int,
    extra_key: Hashable | None = None,
    *,
    parent: bytes | None = None,
    vocab_size: int | None = None,
) -> list[bytes]:
    """Identities of every full page of ``token_ids``, in order. O(n).

    ``parent`` continues a chain (the digest of the page before ``token_ids[0]``);
    by default the chain starts at ``root_digest(page_size, extra_key)``. A partial
    last page has no identity and is ignored.

    >>> a = chain_digests(list(range(40)), 16)
    >>> b = chain_digests(list(range(16, 32)), 16, parent=a[0])
    >>> len(a), b == a[1:]
    (2, True)
    """
    ps = check_int(page_size, "page_size", minimum=1)
    raw = token_bytes(token_ids, vocab_size=vocab_size)
    if parent is None:
        parent = root_digest(ps, extra_key)
    elif not isinstance(parent, bytes) or len(parent) != DIGEST_SIZE:
        raise ValueError(f"parent must be a {DIGEST_SIZE}-byte digest, got {show(parent)}")
    step = 4 * ps
    out = []
    for start in range(0, len(raw) - step + 1, step):
        parent = _sha256(parent + raw[start : start + step]).digest()
        out.append(parent)
    return out
